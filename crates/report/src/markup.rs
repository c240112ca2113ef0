//! A small Markdown subset rendered to HTML for report paragraphs.
//!
//! Supported: paragraphs (blank-line separated), `#` headings, `-`/`*`/`+`
//! bullet lists, `1.` numbered lists, fenced code blocks, and inline
//! `` `code` ``, `**bold**`, `*italic*`/`_italic_`, `[text](url)` and `\`
//! escapes. Everything else is shown literally; all text is HTML-escaped.

/// Escapes `& < > " '` for HTML text and attribute values.
pub(crate) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

enum ListKind {
    Bullet,
    Numbered,
}

fn list_item(line: &str) -> Option<(ListKind, &str)> {
    let t = line.trim_start();
    for p in ["- ", "* ", "+ "] {
        if let Some(rest) = t.strip_prefix(p) {
            return Some((ListKind::Bullet, rest));
        }
    }
    let digits = t.chars().take_while(char::is_ascii_digit).count();
    if digits > 0 && digits <= 9 {
        if let Some(rest) = t[digits..].strip_prefix(". ") {
            return Some((ListKind::Numbered, rest));
        }
    }
    None
}

fn heading(line: &str) -> Option<(usize, &str)> {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&hashes) {
        if let Some(rest) = line[hashes..].strip_prefix(' ') {
            return Some((hashes, rest.trim()));
        }
    }
    None
}

/// Converts Markdown-ish `text` to HTML; headings start at `<h{base}>`.
pub(crate) fn markdown_to_html(text: &str, base: usize) -> String {
    let mut out = String::new();
    let mut para: Vec<&str> = Vec::new();
    let mut list: Option<(ListKind, Vec<String>)> = None;
    let flush_para = |out: &mut String, para: &mut Vec<&str>| {
        if !para.is_empty() {
            out.push_str("<p>");
            out.push_str(&inline(&para.join(" ")));
            out.push_str("</p>\n");
            para.clear();
        }
    };
    let flush_list = |out: &mut String, list: &mut Option<(ListKind, Vec<String>)>| {
        if let Some((kind, items)) = list.take() {
            let tag = match kind {
                ListKind::Bullet => "ul",
                ListKind::Numbered => "ol",
            };
            out.push_str(&format!("<{tag}>\n"));
            for item in items {
                out.push_str(&format!("<li>{}</li>\n", inline(&item)));
            }
            out.push_str(&format!("</{tag}>\n"));
        }
    };
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            flush_para(&mut out, &mut para);
            flush_list(&mut out, &mut list);
            let mut code: Vec<&str> = Vec::new();
            for l in lines.by_ref() {
                if l.trim().starts_with("```") {
                    break;
                }
                code.push(l);
            }
            out.push_str("<pre><code>");
            out.push_str(&escape_html(&code.join("\n")));
            out.push_str("</code></pre>\n");
        } else if trimmed.is_empty() {
            flush_para(&mut out, &mut para);
            flush_list(&mut out, &mut list);
        } else if let Some((level, title)) = heading(trimmed) {
            flush_para(&mut out, &mut para);
            flush_list(&mut out, &mut list);
            let h = (base + level - 1).min(6);
            out.push_str(&format!("<h{h}>{}</h{h}>\n", inline(title)));
        } else if let Some((kind, item)) = list_item(line) {
            flush_para(&mut out, &mut para);
            let same = matches!(
                (&list, &kind),
                (Some((ListKind::Bullet, _)), ListKind::Bullet)
                    | (Some((ListKind::Numbered, _)), ListKind::Numbered)
            );
            if !same {
                flush_list(&mut out, &mut list);
                list = Some((kind, Vec::new()));
            }
            if let Some((_, items)) = list.as_mut() {
                items.push(item.trim().to_string());
            }
        } else if let Some((_, items)) = list.as_mut() {
            // Continuation of the last list item.
            if let Some(last) = items.last_mut() {
                last.push(' ');
                last.push_str(trimmed);
            }
        } else {
            para.push(trimmed);
        }
    }
    flush_para(&mut out, &mut para);
    flush_list(&mut out, &mut list);
    out
}

fn safe_url(url: &str) -> bool {
    let u = url.trim().to_ascii_lowercase();
    if u.is_empty() || u.contains(char::is_whitespace) {
        return false;
    }
    let scheme_end = u.find(':');
    let path_start = u.find(['/', '?', '#']);
    match scheme_end {
        None => true,
        Some(c) if path_start.is_some_and(|p| p < c) => true,
        Some(_) => ["http://", "https://", "mailto:"]
            .iter()
            .any(|s| u.starts_with(s)),
    }
}

fn find(chars: &[char], from: usize, pat: &[char]) -> Option<usize> {
    (from..chars.len().saturating_sub(pat.len() - 1)).find(|&i| chars[i..].starts_with(pat))
}

/// Inline Markdown to HTML.
pub(crate) fn inline(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let text = |cs: &[char]| cs.iter().collect::<String>();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' if i + 1 < chars.len() && chars[i + 1].is_ascii_punctuation() => {
                out.push_str(&escape_html(&chars[i + 1].to_string()));
                i += 2;
                continue;
            }
            '`' => {
                if let Some(j) = find(&chars, i + 1, &['`']) {
                    out.push_str("<code>");
                    out.push_str(&escape_html(&text(&chars[i + 1..j])));
                    out.push_str("</code>");
                    i = j + 1;
                    continue;
                }
            }
            '*' if chars.get(i + 1) == Some(&'*') => {
                if let Some(j) = find(&chars, i + 2, &['*', '*']).filter(|&j| j > i + 2) {
                    out.push_str("<strong>");
                    out.push_str(&inline(&text(&chars[i + 2..j])));
                    out.push_str("</strong>");
                    i = j + 2;
                    continue;
                }
            }
            '*' | '_' => {
                let word_start = i == 0 || !chars[i - 1].is_alphanumeric();
                let opens = chars.get(i + 1).is_some_and(|n| !n.is_whitespace());
                if word_start && opens {
                    let close = (i + 2..chars.len()).find(|&j| {
                        chars[j] == c
                            && !chars[j - 1].is_whitespace()
                            && chars.get(j + 1).is_none_or(|n| !n.is_alphanumeric())
                    });
                    if let Some(j) = close {
                        out.push_str("<em>");
                        out.push_str(&inline(&text(&chars[i + 1..j])));
                        out.push_str("</em>");
                        i = j + 1;
                        continue;
                    }
                }
            }
            '[' => {
                if let Some(j) = find(&chars, i + 1, &[']', '(']) {
                    if let Some(k) = find(&chars, j + 2, &[')']) {
                        let label = text(&chars[i + 1..j]);
                        let url = text(&chars[j + 2..k]);
                        if safe_url(&url) && !label.contains(['[', ']']) {
                            out.push_str(&format!(
                                "<a href=\"{}\">{}</a>",
                                escape_html(url.trim()),
                                inline(&label)
                            ));
                            i = k + 1;
                            continue;
                        }
                    }
                }
            }
            _ => {}
        }
        out.push_str(&escape_html(&c.to_string()));
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_markup() {
        assert_eq!(
            inline("a **b** *c* `d<e>` [f](https://x.org/?a=1&b=2)"),
            "a <strong>b</strong> <em>c</em> <code>d&lt;e&gt;</code> \
             <a href=\"https://x.org/?a=1&amp;b=2\">f</a>"
        );
        assert_eq!(inline("2 * 3 * 4"), "2 * 3 * 4");
        assert_eq!(inline("snake_case_name"), "snake_case_name");
        assert_eq!(inline("\\*not em\\*"), "*not em*");
        assert_eq!(
            inline("[x](javascript:alert(1))"),
            "[x](javascript:alert(1))"
        );
        assert_eq!(inline("<script>"), "&lt;script&gt;");
        assert_eq!(
            inline("unclosed `tick and **bold"),
            "unclosed `tick and **bold"
        );
    }

    #[test]
    fn blocks() {
        let html = markdown_to_html(
            "# Setup\nFirst line\nsecond line.\n\n- one\n- two\n  continued\n\n1. a\n2. b\n\n```\nx < y\n```",
            3,
        );
        assert_eq!(
            html,
            "<h3>Setup</h3>\n<p>First line second line.</p>\n<ul>\n<li>one</li>\n\
             <li>two continued</li>\n</ul>\n<ol>\n<li>a</li>\n<li>b</li>\n</ol>\n\
             <pre><code>x &lt; y</code></pre>\n"
        );
        assert_eq!(markdown_to_html("", 3), "");
    }
}
