//! Real EfficientNet-Lite0 weights (legacy pre-1.6 `torch.save`, lukemelas names) on real photo
//! crops must reproduce PyTorch's top-5 and logits. Needs the shared data folder
//! (`../shared` next to the repository); skipped with a note when it is absent.

use std::path::PathBuf;

use effcnn_arch::{Layout, Options};
use effcnn_nn::parity::rel_l2;
use effcnn_nn::predict::{load_image, predict, Normalization};
use effcnn_nn::{load_weights, EffNet, InitConfig};
use serde_json::Value;

fn shared() -> Option<PathBuf> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    p.join("weights/efficientnet-lite0-57934424.pth")
        .exists()
        .then_some(p)
}

#[test]
fn efficientnet_lite0_real_weights_match_pytorch() {
    let Some(shared) = shared() else {
        eprintln!("SKIPPED: ../shared/weights/efficientnet-lite0-57934424.pth not present");
        return;
    };
    let pred_path = shared.join("fixtures/pretrained/efficientnet_lite0_predictions.json");
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(&pred_path).unwrap()).unwrap();
    let graph = effcnn_arch::resolve("efficientnet_lite0", &Options::imagenet()).unwrap();
    let device = effcnn_nn::cpu();
    let mut model = EffNet::new(&graph, &device, InitConfig::default()).unwrap();
    assert_eq!(
        model.num_trainable_params() as u64,
        reference["params"].as_u64().unwrap()
    );
    // Auto-detected layout, strict load.
    let report = load_weights(
        &mut model,
        shared.join("weights/efficientnet-lite0-57934424.pth"),
        None,
        false,
    )
    .unwrap();
    assert_eq!(report.layout, Layout::Lukemelas);
    eprintln!(
        "loaded {} tensors, ignored {}",
        report.loaded, report.ignored
    );

    let norms = [
        ("tf127", Normalization::TF127),
        ("imagenet", Normalization::IMAGENET),
    ];
    let images = reference["images"].as_object().unwrap();
    for (name, per_norm) in images {
        for (norm_name, norm) in norms {
            let r = &per_norm[norm_name];
            let crop = shared.join(format!("fixtures/pretrained/crops/{name}.png"));
            let batch = load_image(&crop, 224, norm).unwrap();
            let p = predict(&model, &batch, 5).unwrap().remove(0);
            let want_logits: Vec<f32> = r["logits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect();
            let err = rel_l2(&p.logits, &want_logits);
            let want_top: Vec<usize> = r["top5"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e[0].as_u64().unwrap() as usize)
                .collect();
            let got_top: Vec<usize> = p.top.iter().map(|t| t.index).collect();
            eprintln!(
                "{name} {norm_name}: rel-L2 {err:.3e}, top-5 {got_top:?} ({}: {:.4})",
                p.top[0].label, p.top[0].prob
            );
            assert_eq!(got_top, want_top, "{name} {norm_name}: top-5");
            for (t, e) in p.top.iter().zip(r["top5"].as_array().unwrap()) {
                let want_p = e[1].as_f64().unwrap() as f32;
                assert!(
                    (t.prob - want_p).abs() < 1e-3,
                    "{name}: prob {} vs {want_p}",
                    t.prob
                );
            }
            assert!(err <= 1e-3, "{name} {norm_name}: rel-L2 {err:.3e}");
        }
    }
    // The zoo entry records the normalisation the weights were trained with.
    assert_eq!(model.graph().meta.normalization(), Normalization::TF127);
}
