//! `.npy` tensors as `effcnn predict` reads them.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(batch) = effcnn_nn::predict::parse_npy(data) {
        let [n, c, h, w] = batch.shape;
        assert_eq!(c, 3);
        assert_eq!(n * c * h * w, batch.data.len());
        assert!(batch.data.iter().all(|v| v.is_finite()));
    }
});
