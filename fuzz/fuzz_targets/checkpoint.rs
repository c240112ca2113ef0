//! Checkpoint reading (`.safetensors`, PyTorch zip / legacy / pickle with the weights-only
//! guard): the fuzz input is written to a file and read as `--weights FILE` is.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("effcnn-fuzz-ckpt-{}", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(map) = effcnn_nn::read_checkpoint(&path) {
        for t in map.values() {
            // Float tensors hold exactly the values their shape asks for.
            if t.float {
                let n = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                assert_eq!(n, Some(t.data.len()));
            }
        }
    }
});
