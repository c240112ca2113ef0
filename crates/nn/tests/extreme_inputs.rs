//! Extreme but valid inputs (all-zero images, huge pixel values) must not crash inference.

use effcnn_arch::Options;
use effcnn_nn::predict::{predict, InputBatch};
use effcnn_nn::{EffNet, InitConfig};

#[test]
fn zero_and_huge_inputs_run_through_every_family() {
    let device = effcnn_nn::cpu();
    for name in [
        "mobilenet_v2",
        "mobilenet_v3_small",
        "shufflenet_v2_x0_5",
        "efficientnet_lite0",
        "se_resnet20",
    ] {
        let model =
            EffNet::from_zoo(name, &Options::cifar(), &device, InitConfig::default()).unwrap();
        for v in [0.0f32, 3.0e38, -3.0e38] {
            let batch = InputBatch {
                shape: [2, 3, 32, 32],
                data: vec![v; 2 * 3 * 32 * 32],
            };
            let p = predict(&model, &batch, 3).unwrap_or_else(|e| panic!("{name} on {v}: {e}"));
            assert_eq!(p.len(), 2);
            assert_eq!(p[0].top.len(), 3);
            if v == 0.0 {
                assert!(
                    p[0].logits.iter().all(|x| x.is_finite()),
                    "{name}: zero input gives non-finite logits"
                );
            }
        }
    }
}
