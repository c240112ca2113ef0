//! Pareto frontier of cost/quality trade-offs.

use std::cmp::Ordering;

/// Indices of the non-dominated points of `points` (`(x, y)` pairs), sorted by
/// increasing `x` (ties: better `y` first, then lower index).
///
/// With `minimize_x` a lower `x` is better (cost: MACs, parameters, latency),
/// otherwise a higher one; with `maximize_y` a higher `y` is better (accuracy),
/// otherwise a lower one. A point is dominated when another point is at least
/// as good in both coordinates and strictly better in one. Exact duplicates do
/// not dominate each other, so all copies of a frontier point are returned.
/// Points with a NaN or infinite coordinate are ignored.
///
/// ```
/// use effcnn_report::pareto_frontier;
/// // (MACs, accuracy)
/// let pts = [(300.0, 72.0), (150.0, 65.0), (400.0, 70.0), (600.0, 75.0)];
/// assert_eq!(pareto_frontier(&pts, true, true), vec![1, 0, 3]);
/// ```
pub fn pareto_frontier(points: &[(f64, f64)], minimize_x: bool, maximize_y: bool) -> Vec<usize> {
    // Map both objectives to "smaller x is better, larger y is better".
    let key = |(x, y): (f64, f64)| {
        (
            if minimize_x { x } else { -x },
            if maximize_y { y } else { -y },
        )
    };
    let valid: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    let dominates = |a: (f64, f64), b: (f64, f64)| {
        let (ax, ay) = key(a);
        let (bx, by) = key(b);
        ax <= bx && ay >= by && (ax < bx || ay > by)
    };
    let mut front: Vec<usize> = valid
        .iter()
        .copied()
        .filter(|&i| !valid.iter().any(|&j| dominates(points[j], points[i])))
        .collect();
    front.sort_by(|&a, &b| {
        let (ax, ay) = points[a];
        let (bx, by) = points[b];
        let y_order = if maximize_y {
            by.partial_cmp(&ay)
        } else {
            ay.partial_cmp(&by)
        };
        ax.partial_cmp(&bx)
            .unwrap_or(Ordering::Equal)
            .then(y_order.unwrap_or(Ordering::Equal))
            .then(a.cmp(&b))
    });
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_made_example() {
        // (cost, accuracy)
        let pts = [
            (300.0, 72.0),         // 0: frontier
            (150.0, 65.0),         // 1: frontier (cheapest)
            (400.0, 70.0),         // 2: dominated by 0
            (600.0, 75.0),         // 3: frontier (best)
            (300.0, 71.0),         // 4: same cost as 0, worse accuracy -> dominated
            (150.0, 65.0),         // 5: exact duplicate of 1 -> kept
            (700.0, 75.0),         // 6: same accuracy as 3, more cost -> dominated
            (f64::NAN, 99.0),      // 7: ignored
            (50.0, f64::INFINITY), // 8: ignored
            (100.0, 60.0),         // 9: frontier (cheaper still)
            (450.0, 72.0),         // 10: ties 0 on accuracy, costs more -> dominated
        ];
        assert_eq!(pareto_frontier(&pts, true, true), vec![9, 1, 5, 0, 3]);
    }

    #[test]
    fn other_directions() {
        let pts = [(1.0, 1.0), (2.0, 2.0), (3.0, 0.5), (2.0, 3.0)];
        // Maximise x, maximise y: (2,3) and (3,0.5) survive.
        assert_eq!(pareto_frontier(&pts, false, true), vec![3, 2]);
        // Minimise x, minimise y: (1,1) and (3,0.5).
        assert_eq!(pareto_frontier(&pts, true, false), vec![0, 2]);
        // Maximise x, minimise y: only (3, 0.5).
        assert_eq!(pareto_frontier(&pts, false, false), vec![2]);
    }

    #[test]
    fn degenerate_inputs() {
        assert!(pareto_frontier(&[], true, true).is_empty());
        assert!(pareto_frontier(&[(f64::NAN, 1.0)], true, true).is_empty());
        assert_eq!(pareto_frontier(&[(5.0, 5.0)], true, true), vec![0]);
        assert_eq!(
            pareto_frontier(&[(1.0, 1.0), (1.0, 1.0), (1.0, 1.0)], true, true),
            vec![0, 1, 2]
        );
    }
}
