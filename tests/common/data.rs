//! A synthetic MNIST-format data folder for training tests.

use std::io::Write;
use std::path::Path;

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

/// A learnable 10-class problem of 6×6 images (shared by the training tests):
/// class k lights up pixels congruent to k mod 10, with deterministic noise.
pub fn write_dataset(dir: &Path, train: usize, test: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let names = [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ];
    for (k, count) in [(0usize, train), (2, test)] {
        let labels: Vec<u8> = (0..count).map(|i| ((i * 7 + k) % 10) as u8).collect();
        let mut px = Vec::with_capacity(count * 36);
        for (i, &l) in labels.iter().enumerate() {
            for p in 0..36usize {
                let noise = ((i * 131 + p * 17 + k) % 60) as u8;
                px.push(if p % 10 == l as usize {
                    180 + noise
                } else {
                    noise
                });
            }
        }
        for (name, bytes) in [
            (names[k], idx(&[count as u32, 6, 6], &px)),
            (names[k + 1], idx(&[count as u32], &labels)),
        ] {
            let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
            let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
            e.write_all(&bytes).unwrap();
            e.finish().unwrap();
        }
    }
}
