//! CIFAR-10 binary batches: the fuzz input is written as every batch file of a folder, which
//! is then loaded the way `--data DIR` loads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("effcnn-fuzz-cifar-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ] {
        std::fs::write(dir.join(f), data).unwrap();
    }
    if let Ok(splits) = effcnn_data::load_cifar10(&dir) {
        // Accepted input: whole records with labels 0..10.
        assert!(!data.is_empty() && data.len() % 3073 == 0);
        assert_eq!(splits.test.len(), data.len() / 3073);
        assert!(data.chunks(3073).all(|r| r[0] < 10));
    }
});
