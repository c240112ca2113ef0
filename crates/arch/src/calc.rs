//! The curriculum's cost calculators (Exercises 1.2–1.4, 2, 3, 4.7): a single layer or block is
//! built as a small graph with the same blocks the zoo uses and measured by the same analyzer, then
//! compared with the closed-form formula and with a standard convolution doing the same mapping.

use serde::Serialize;

use crate::blocks::{
    conv_bn_act, depthwise_separable, inverted_residual, squeeze_excitation, ConvCfg, IrCfg,
    IrNames, Pn, SeCfg, SeWidth,
};
use crate::builder::GraphBuilder;
use crate::cost::{analyze, ModelCost};
use crate::error::ArchError;
use crate::graph::InitScheme;
use crate::graph::{Act, Graph, ModelMeta, Profile, Shape};

/// One stage of a calculated block (a conv/linear layer, or a zero-MAC op like shuffle).
#[derive(Debug, Clone, Serialize)]
pub struct Stage {
    pub name: String,
    pub op: String,
    pub input: Shape,
    pub output: Shape,
    pub params: u64,
    pub macs: u64,
}

/// The result of a calculator.
#[derive(Debug, Clone, Serialize)]
pub struct Calc {
    pub title: String,
    pub stages: Vec<Stage>,
    pub params: u64,
    pub macs: u64,
    /// Closed-form formula (MACs) and its value, which must equal `macs`.
    pub formula: String,
    pub formula_macs: u64,
    /// The standard convolution doing the same C_in → C_out mapping, for ratios (where meaningful).
    pub standard: Option<(u64, u64)>,
    pub notes: Vec<String>,
}

impl Calc {
    /// MAC reduction against the standard convolution (standard / this).
    pub fn mac_ratio(&self) -> Option<f64> {
        self.standard.map(|(_, m)| m as f64 / self.macs as f64)
    }
    pub fn param_ratio(&self) -> Option<f64> {
        self.standard.map(|(p, _)| p as f64 / self.params as f64)
    }
}

/// Shape parameters shared by the calculators.
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub k: usize,
    pub cin: usize,
    pub cout: usize,
    /// Input height = width.
    pub size: usize,
    pub stride: usize,
}

fn meta(name: &str, size: usize) -> ModelMeta {
    ModelMeta {
        name: name.into(),
        family: "calculator".into(),
        profile: Profile::Imagenet,
        width: 1.0,
        depth: 1.0,
        resolution: size,
        classes: 0,
        norm_mean: [0.0; 3],
        norm_std: [1.0; 3],
        init: InitScheme::Torchvision,
    }
}

fn graph(
    name: &str,
    d: &Dims,
    f: impl FnOnce(&mut GraphBuilder, usize) -> Result<usize, ArchError>,
) -> Result<Graph, ArchError> {
    if d.cin == 0 || d.cout == 0 || d.size == 0 || d.k == 0 || d.stride == 0 {
        return Err(ArchError::BadOption(
            "k, cin, cout, size and stride must all be at least 1".into(),
        ));
    }
    let (mut g, x) = GraphBuilder::new(Shape::new(d.cin, d.size, d.size));
    let y = f(&mut g, x)?;
    g.finish(meta(name, d.size), y)
}

fn stages(c: &ModelCost, with_zero_mac: &[&str]) -> Vec<Stage> {
    c.layers
        .iter()
        .filter(|l| l.k.is_some() || l.op == "linear" || with_zero_mac.contains(&l.op.as_str()))
        .map(|l| Stage {
            name: l.path.clone(),
            op: l.op.clone(),
            input: l.input.first().copied().unwrap_or(l.out),
            output: l.out,
            params: l.params,
            macs: l.macs,
        })
        .collect()
}

fn conv_only(d: &Dims, groups: usize) -> Result<ModelCost, ArchError> {
    let g = graph("conv", d, |g, x| {
        g.conv2d(
            x,
            "conv",
            d.cout,
            d.k,
            d.stride,
            groups,
            false,
            false,
            vec![],
        )
    })?;
    Ok(analyze(&g))
}

/// Weights only (no BN) so that the numbers are the textbook ones.
fn finish(
    title: String,
    c: &ModelCost,
    extra: &[&str],
    formula: String,
    formula_macs: u64,
    standard: Option<(u64, u64)>,
    notes: Vec<String>,
) -> Calc {
    Calc {
        title,
        stages: stages(c, extra),
        params: c.params,
        macs: c.macs,
        formula,
        formula_macs,
        standard,
        notes,
    }
}

fn out_size(d: &Dims) -> u64 {
    // PyTorch padding k/2 (odd k): D_F = ceil(size / stride).
    d.size.div_ceil(d.stride) as u64
}

/// Standard k×k convolution.
pub fn standard_conv(d: &Dims) -> Result<Calc, ArchError> {
    let c = conv_only(d, 1)?;
    let df = out_size(d);
    let f = (d.k * d.k * d.cin * d.cout) as u64 * df * df;
    Ok(finish(
        format!(
            "standard {}×{} conv {}→{} on {}²",
            d.k, d.k, d.cin, d.cout, d.size
        ),
        &c,
        &[],
        format!("D_K²·M·N·D_F² = {}²·{}·{}·{}²", d.k, d.cin, d.cout, df),
        f,
        None,
        vec![],
    ))
}

/// Depthwise k×k convolution (one filter per input channel; `cout` is ignored).
pub fn depthwise(d: &Dims) -> Result<Calc, ArchError> {
    let dd = Dims { cout: d.cin, ..*d };
    let c = conv_only(&dd, d.cin)?;
    let df = out_size(d);
    Ok(finish(
        format!(
            "depthwise {}×{} conv on {} channels, {}²",
            d.k, d.k, d.cin, d.size
        ),
        &c,
        &[],
        format!("D_K²·M·D_F² = {}²·{}·{}²", d.k, d.cin, df),
        (d.k * d.k * d.cin) as u64 * df * df,
        None,
        vec![format!(
            "{} filters of shape 1×{}×{}; output {}×{}×{} (channels unchanged)",
            d.cin, d.k, d.k, d.cin, df, df
        )],
    ))
}

/// Pointwise 1×1 convolution.
pub fn pointwise(d: &Dims) -> Result<Calc, ArchError> {
    let dd = Dims { k: 1, ..*d };
    let c = conv_only(&dd, 1)?;
    let df = out_size(&dd);
    Ok(finish(
        format!("pointwise 1×1 conv {}→{} on {}²", d.cin, d.cout, d.size),
        &c,
        &[],
        format!("M·N·D_F² = {}·{}·{}²", d.cin, d.cout, df),
        (d.cin * d.cout) as u64 * df * df,
        None,
        vec!["mixes channels; no spatial extent".into()],
    ))
}

/// Group convolution with `groups` groups.
pub fn group_conv(d: &Dims, groups: usize) -> Result<Calc, ArchError> {
    let c = conv_only(d, groups)?;
    let std = conv_only(d, 1)?;
    let df = out_size(d);
    Ok(finish(
        format!("{}×{} group conv {}→{}, g={} on {}²", d.k, d.k, d.cin, d.cout, groups, d.size),
        &c,
        &[],
        format!("D_K²·(M/g)·N·D_F² = {}²·({}/{})·{}·{}²", d.k, d.cin, groups, d.cout, df),
        (d.k * d.k * (d.cin / groups) * d.cout) as u64 * df * df,
        Some((std.params, std.macs)),
        vec![format!("g times fewer params and MACs than the standard conv; each output sees only {} of {} input channels — hence channel shuffle", d.cin / groups, d.cin)],
    ))
}

/// Depthwise-separable convolution (depthwise k×k then pointwise 1×1), weights only.
pub fn dwsep(d: &Dims) -> Result<Calc, ArchError> {
    let g = graph("dwsep", d, |g, x| {
        let y = g.conv2d(
            x,
            "depthwise",
            d.cin,
            d.k,
            d.stride,
            d.cin,
            false,
            false,
            vec![],
        )?;
        g.conv2d(y, "pointwise", d.cout, 1, 1, 1, false, false, vec![])
    })?;
    let c = analyze(&g);
    let std = conv_only(d, 1)?;
    let df = out_size(d);
    let rule = 1.0 / d.cout as f64 + 1.0 / (d.k * d.k) as f64;
    Ok(finish(
        format!(
            "depthwise-separable {}×{} conv {}→{} on {}²",
            d.k, d.k, d.cin, d.cout, d.size
        ),
        &c,
        &[],
        format!(
            "D_K²·M·D_F² + M·N·D_F² = {}²·{}·{}² + {}·{}·{}²",
            d.k, d.cin, df, d.cin, d.cout, df
        ),
        ((d.k * d.k * d.cin) as u64 + (d.cin * d.cout) as u64) * df * df,
        Some((std.params, std.macs)),
        vec![format!(
            "separable / standard = 1/N + 1/D_K² = 1/{} + 1/{} = {:.4} (≈ {:.1}× fewer MACs)",
            d.cout,
            d.k * d.k,
            rule,
            1.0 / rule
        )],
    ))
}

/// Depthwise-separable block as MobileNetV1 uses it (with BN + ReLU), for Exercise 1.5 shapes.
pub fn dwsep_block_graph(d: &Dims) -> Result<Graph, ArchError> {
    graph("dwsep_block", d, |g, x| {
        depthwise_separable(
            g,
            x,
            "block",
            d.cout,
            d.k,
            d.stride,
            Act::Relu,
            1e-5,
            &Pn::new("block.conv_dw", vec![]),
            &Pn::new("block.bn1", vec![]),
            &Pn::new("block.conv_pw", vec![]),
            &Pn::new("block.bn2", vec![]),
        )
    })
}

/// Squeeze-and-excitation on a C×H×W map with reduction ratio r (SENet rule C/r).
pub fn se(c_: usize, size: usize, r: usize) -> Result<Calc, ArchError> {
    if r == 0 || c_ / r.max(1) == 0 {
        return Err(ArchError::BadOption(format!(
            "reduction ratio r={r} leaves no channels for C={c_}"
        )));
    }
    let d = Dims {
        k: 1,
        cin: c_,
        cout: c_,
        size,
        stride: 1,
    };
    let g = graph("se", &d, |g, x| {
        let cfg = SeCfg {
            width: SeWidth::Ratio(r),
            inner: Act::Relu,
            gate: Act::Sigmoid,
        };
        squeeze_excitation(
            g,
            x,
            "se",
            cfg,
            &Pn::new("se.fc1", vec![]),
            &Pn::new("se.fc2", vec![]),
        )
        .map(|(y, _)| y)
    })?;
    let c = analyze(&g);
    let s = (c_ / r) as u64;
    Ok(finish(
        format!("squeeze-and-excitation C={c_}, r={r} on {size}²"),
        &c,
        &["gap", "sigmoid", "scale"],
        format!("2·C²/r = 2·{c_}²/{r} (FC layers on a 1×1 map)"),
        2 * c_ as u64 * s,
        None,
        vec![
            format!("params 2C²/r + C/r + C = {} weights + {} biases", 2 * c_ as u64 * s, s + c_ as u64),
            format!("squeeze: GAP → C×1×1 = {c_}×1×1 channel descriptor; excitation: FC {c_}→{s}, ReLU, FC {s}→{c_}, sigmoid → {c_} gates in (0,1)"),
            format!("scale: {} multiplies (not counted as MACs by convention)", c_ as u64 * (size * size) as u64),
        ],
    ))
}

/// ShuffleNetV1 unit (stride 1, residual): c in = out channels, bottleneck m = c/4, g groups.
pub fn shuffle_unit(c_: usize, size: usize, groups: usize) -> Result<Calc, ArchError> {
    let m = c_ / 4;
    if groups == 0 || m == 0 || m % groups != 0 || c_ % groups != 0 {
        return Err(ArchError::BadOption(format!(
            "groups={groups} must divide the channels ({c_}) and the bottleneck width ({m})"
        )));
    }
    let d = Dims {
        k: 3,
        cin: c_,
        cout: c_,
        size,
        stride: 1,
    };
    let g = graph("shuffle_unit", &d, |g, x| {
        let y = g.conv2d(x, "gconv1", m, 1, 1, groups, false, false, vec![])?;
        let y = g.shuffle(y, "shuffle", groups)?;
        let y = g.conv2d(y, "dwconv", m, 3, 1, m, false, false, vec![])?;
        g.conv2d(y, "gconv2", c_, 1, 1, groups, false, false, vec![])
    })?;
    let c = analyze(&g);
    let hw = (size * size) as u64;
    let (cc, mm, gg) = (c_ as u64, m as u64, groups as u64);
    let resnet = hw * (2 * cc * mm + 9 * mm * mm);
    let resnext = hw * (2 * cc * mm + 9 * mm * mm / gg);
    Ok(finish(
        format!("ShuffleNet unit c={c_}, m={m}, g={groups} on {size}²"),
        &c,
        &["shuffle"],
        format!("h·w·(2cm/g + 9m) = {size}²·(2·{c_}·{m}/{groups} + 9·{m})"),
        hw * (2 * cc * mm / gg + 9 * mm),
        None,
        vec![
            format!("ResNet bottleneck h·w·(2cm + 9m²) = {resnet}"),
            format!("ResNeXt h·w·(2cm + 9m²/g) = {resnext}"),
            "channel shuffle: 0 MACs, one full read + write".into(),
        ],
    ))
}

/// MobileNetV2 inverted residual: d′ → t·d′ → d″ with a k×k depthwise conv (weights only, BN excluded from MACs anyway).
pub fn inverted_residual_calc(d: &Dims, t: usize) -> Result<Calc, ArchError> {
    if t == 0 {
        return Err(ArchError::BadOption(
            "expansion t must be at least 1".into(),
        ));
    }
    let mid = d.cin * t;
    let g = graph("inverted_residual", d, |g, x| {
        let n = IrNames {
            conv_pw: Pn::new("expand", vec![]),
            bn1: Pn::new("expand_bn", vec![]),
            conv_dw: Pn::new("depthwise", vec![]),
            bn2: Pn::new("depthwise_bn", vec![]),
            conv_pwl: Pn::new("project", vec![]),
            bn3: Pn::new("project_bn", vec![]),
            ..Default::default()
        };
        let cfg = IrCfg {
            mid,
            cout: d.cout,
            k: d.k,
            stride: d.stride,
            expand: t != 1,
            act: Act::Relu6,
            se: None,
            eps: 1e-5,
            tf_same: false,
            drop_path: 0.0,
            residual: true,
        };
        inverted_residual(g, x, "block", cfg, &n)
    })?;
    let c = analyze(&g);
    let hw_in = (d.size * d.size) as u64;
    let df = out_size(d);
    let hw_out = df * df;
    let (d1, d2, tt, kk) = (d.cin as u64, d.cout as u64, t as u64, (d.k * d.k) as u64);
    let expand = if t != 1 { hw_in * d1 * tt * d1 } else { 0 };
    let formula_macs = expand + hw_out * d1 * tt * kk + hw_out * d1 * tt * d2;
    let formula = if d.stride == 1 {
        format!(
            "h·w·d′·t·(d′ + k² + d″) = {}²·{}·{}·({} + {} + {})",
            d.size,
            d.cin,
            t,
            d.cin,
            d.k * d.k,
            d.cout
        )
    } else {
        "h·w·d′·t·d′ + h′·w′·d′·t·(k² + d″) (depthwise and projection at the output resolution)"
            .into()
    };
    let mut notes = vec!["no activation after the projection (linear bottleneck)".to_string()];
    if d.stride == 1 && d.cin == d.cout {
        notes.push("residual connection: stride 1 and d′ = d″".into());
    } else {
        notes.push("no residual (stride 2 or d′ ≠ d″)".into());
    }
    Ok(finish(
        format!(
            "inverted residual {}→{}(t={t})→{} k={} s={} on {}²",
            d.cin, mid, d.cout, d.k, d.stride, d.size
        ),
        &c,
        &[],
        formula,
        formula_macs,
        None,
        notes,
    ))
}

/// conv-bn-act used by the `explain` texts to show BN parameters next to a conv.
pub fn conv_bn_graph(d: &Dims) -> Result<Graph, ArchError> {
    graph("conv_bn", d, |g, x| {
        conv_bn_act(
            g,
            x,
            &Pn::new("conv", vec![]),
            &Pn::new("bn", vec![]),
            ConvCfg::new(d.cout, d.k, d.stride),
            1e-5,
            Some(Act::Relu),
        )
    })
}

/// The channel-shuffle permutation: output channel i takes input channel `perm[i]`.
pub fn shuffle_permutation(groups: usize, per_group: usize) -> Vec<usize> {
    let mut v = Vec::with_capacity(groups * per_group);
    for j in 0..per_group {
        for gi in 0..groups {
            v.push(gi * per_group + j);
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dwsep_matches_formula_and_rule() {
        let d = Dims {
            k: 3,
            cin: 128,
            cout: 256,
            size: 56,
            stride: 1,
        };
        let c = dwsep(&d).unwrap();
        assert_eq!(c.macs, c.formula_macs);
        let ratio = c.mac_ratio().unwrap();
        assert!((ratio - 1.0 / (1.0 / 256.0 + 1.0 / 9.0)).abs() < 1e-9);
        assert!((8.6..8.8).contains(&ratio), "{ratio}");
    }

    #[test]
    fn mobilenet_v1_table3_layer() {
        // MobileNetV1 Table 3: 14×14×512 → 512, 3×3.
        let d = Dims {
            k: 3,
            cin: 512,
            cout: 512,
            size: 14,
            stride: 1,
        };
        let std = standard_conv(&d).unwrap();
        assert_eq!(std.macs, 462_422_016); // 462.4 M
        assert_eq!(std.params, 2_359_296); // 2.36 M
        let sep = dwsep(&d).unwrap();
        assert_eq!(sep.macs, 52_283_392); // 52.3 M
        assert_eq!(sep.params, 266_752); // 0.27 M
    }

    #[test]
    fn se_params_formula() {
        let c = se(256, 56, 16).unwrap();
        assert_eq!(c.macs, c.formula_macs);
        assert_eq!(c.params, 2 * 256 * 16 + 16 + 256);
    }

    #[test]
    fn shuffle_unit_formula() {
        let c = shuffle_unit(240, 28, 3).unwrap();
        assert_eq!(c.macs, c.formula_macs);
        assert!(shuffle_unit(240, 28, 7).is_err());
    }

    #[test]
    fn inverted_residual_formula() {
        for s in [1, 2] {
            let d = Dims {
                k: 3,
                cin: 24,
                cout: 24,
                size: 56,
                stride: s,
            };
            let c = inverted_residual_calc(&d, 6).unwrap();
            assert_eq!(c.macs, c.formula_macs, "stride {s}");
        }
    }

    #[test]
    fn shuffle_g2_n3() {
        let p = shuffle_permutation(2, 3);
        let names = ["a0", "a1", "a2", "b0", "b1", "b2"];
        let out: Vec<&str> = p.iter().map(|&i| names[i]).collect();
        assert_eq!(out, ["a0", "b0", "a1", "b1", "a2", "b2"]);
    }
}
