//! Image classification data in the IDX format of MNIST and Fashion-MNIST
//! (LeCun et al.; `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-…`), gzip-compressed or plain.
//!
//! An IDX file is a 4-byte magic number (two zero bytes, the element type,
//! 0x08 = unsigned byte, and the number of dimensions), one big-endian u32
//! per dimension, then the elements in row-major order. Every field is
//! checked; a file that is truncated, has a wrong magic number or disagrees
//! with its partner (image and label counts) is refused with its name and
//! what was wrong.
//!
//! Pixels are scaled to [0, 1] and then normalized with the training set's
//! own mean and standard deviation (one scalar each, as the paper's
//! `Normalize((0.1307,), (0.3081,))` does for MNIST), applied to both sets.

use crate::error::{Error, Result};
use crate::rng::philox4x32_10;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Where Debian's `dataset-fashion-mnist` package installs the data.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The four files of an MNIST-format folder (each may also end in `.gz`).
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Number of classes of MNIST-format data.
pub const CLASSES: usize = 10;

/// One IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<u8>,
}

fn idx_err(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid("data file", path.display(), &why.to_string())
}

/// Parses IDX bytes (already decompressed); `path` names the file in errors.
pub fn parse_idx(path: &Path, bytes: &[u8]) -> Result<IdxArray> {
    if bytes.len() < 4 {
        return Err(idx_err(
            path,
            format!(
                "truncated: {} bytes, shorter than the 4-byte IDX magic number",
                bytes.len()
            ),
        ));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(idx_err(
            path,
            format!(
                "not an IDX file: the magic number starts {:02x} {:02x}, expected 00 00",
                bytes[0], bytes[1]
            ),
        ));
    }
    if bytes[2] != 0x08 {
        return Err(idx_err(
            path,
            format!(
                "element type 0x{:02x} is not supported: expected 0x08 (unsigned byte), as MNIST-format data has",
                bytes[2]
            ),
        ));
    }
    let nd = bytes[3] as usize;
    if nd == 0 {
        return Err(idx_err(path, "an IDX file with 0 dimensions"));
    }
    let header = 4 + 4 * nd;
    if bytes.len() < header {
        return Err(idx_err(
            path,
            format!(
                "truncated: {} bytes, shorter than its header of {nd} dimensions ({header} bytes)",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = (0..nd)
        .map(|k| {
            let o = 4 + 4 * k;
            u32::from_be_bytes([bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]]) as usize
        })
        .collect();
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| idx_err(path, format!("dimensions {dims:?} overflow")))?;
    let have = bytes.len() - header;
    if have != count {
        return Err(idx_err(
            path,
            format!(
                "{} dimensions {dims:?} call for {count} bytes of data, but the file holds {have}",
                if have < count {
                    "truncated:"
                } else {
                    "trailing bytes:"
                }
            ),
        ));
    }
    Ok(IdxArray {
        dims,
        data: bytes[header..].to_vec(),
    })
}

/// Largest IDX data read (elements of one file): 2 GiB, four times
/// EMNIST's largest set; a header declaring more is refused before reading.
pub const MAX_IDX_BYTES: u64 = 2 << 30;

/// Up to `n` bytes of `r` (fewer at its end).
fn read_up_to(r: &mut impl Read, n: u64) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.take(n).read_to_end(&mut out)?;
    Ok(out)
}

/// Reads an IDX file, gunzipping it when it starts with the gzip magic.
///
/// The file must be a regular file (a FIFO or a device is refused, see
/// [`crate::safe_fs::open_regular`]). The stream is read header first: the
/// magic number and the dimensions fix the size of the data (refused above
/// [`MAX_IDX_BYTES`]), and no more than that, plus one byte to detect
/// trailing data, is ever read or inflated — a gzip stream that inflates
/// past its header's size stops there.
pub fn read_idx(path: &Path) -> Result<IdxArray> {
    let (file, _) = crate::safe_fs::open_regular(path)
        .map_err(|e| idx_err(path, format!("cannot be read: {e}")))?;
    let mut file = std::io::BufReader::new(file);
    let head =
        read_up_to(&mut file, 2).map_err(|e| idx_err(path, format!("cannot be read: {e}")))?;
    let gz = head.starts_with(&[0x1f, 0x8b]);
    let whole = std::io::Cursor::new(head).chain(file);
    let mut r: Box<dyn Read> = if gz {
        Box::new(flate2::read::GzDecoder::new(whole))
    } else {
        Box::new(whole)
    };
    let read_err = |e: std::io::Error| {
        if gz {
            idx_err(path, format!("is not valid gzip (truncated?): {e}"))
        } else {
            idx_err(path, format!("cannot be read: {e}"))
        }
    };
    // Magic number, then one u32 per dimension.
    let mut bytes = read_up_to(&mut r, 4).map_err(read_err)?;
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] == 0 {
        return parse_idx(path, &bytes);
    }
    let nd = bytes[3] as u64;
    bytes.extend(read_up_to(&mut r, 4 * nd).map_err(read_err)?);
    if bytes.len() as u64 != 4 + 4 * nd {
        return parse_idx(path, &bytes);
    }
    let dims: Vec<u64> = bytes[4..]
        .chunks(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let count = dims
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .ok_or_else(|| idx_err(path, format!("dimensions {dims:?} overflow")))?;
    if count > MAX_IDX_BYTES {
        return Err(idx_err(
            path,
            format!(
                "dimensions {dims:?} call for {count} bytes of data, more than the {MAX_IDX_BYTES} \
                 bytes an MNIST-format file may hold here: it is not one"
            ),
        ));
    }
    // The data, and one byte more to see trailing bytes (never more: a
    // gzip stream is not inflated past what the header declares).
    let data = read_up_to(&mut r, count + 1).map_err(read_err)?;
    if data.len() as u64 > count {
        return Err(idx_err(
            path,
            format!(
                "trailing bytes: dimensions {dims:?} call for {count} bytes of data, but the {}",
                if gz {
                    "gzip stream inflates to more"
                } else {
                    "file holds more"
                }
            ),
        ));
    }
    bytes.extend(data);
    parse_idx(path, &bytes)
}

/// The path of `name` in `dir`: plain, or with `.gz`.
fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    for cand in [dir.join(name), dir.join(format!("{name}.gz"))] {
        if cand.is_file() {
            return Ok(cand);
        }
    }
    Err(Error::invalid(
        "data.dir",
        dir.display(),
        &format!(
            "holds no {name} or {name}.gz: point data.dir at a folder with the four MNIST-format files \
             (Fashion-MNIST: `apt-get install dataset-fashion-mnist` puts them in {FASHION_MNIST_DIR})"
        ),
    ))
}

/// Images with their labels, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Pixels per image.
    pub dim: usize,
    /// Images, `len × dim`, row-major, normalized.
    pub images: Vec<f32>,
    /// Labels 0..10.
    pub labels: Vec<u8>,
}

impl Split {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.dim..(i + 1) * self.dim]
    }

    /// The first `n` images (all when `n` is larger).
    pub fn take(&self, n: usize) -> Split {
        let n = n.min(self.len());
        Split {
            dim: self.dim,
            images: self.images[..n * self.dim].to_vec(),
            labels: self.labels[..n].to_vec(),
        }
    }
}

/// A training set and a test set.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Training images.
    pub train: Split,
    /// Test images.
    pub test: Split,
    /// Mean of the training pixels (scaled to [0, 1]) used to normalize.
    pub mean: f64,
    /// Their standard deviation.
    pub std: f64,
}

fn raw_split(images: &Path, labels: &Path) -> Result<(usize, Vec<u8>, Vec<u8>)> {
    let im = read_idx(images)?;
    let lb = read_idx(labels)?;
    if im.dims.len() < 2 {
        return Err(idx_err(
            images,
            format!(
                "has dimensions {:?}: an image file needs at least 2 (count and pixels)",
                im.dims
            ),
        ));
    }
    if lb.dims.len() != 1 {
        return Err(idx_err(
            labels,
            format!(
                "has dimensions {:?}: a label file has exactly one (the count)",
                lb.dims
            ),
        ));
    }
    if im.dims[0] != lb.dims[0] {
        return Err(idx_err(
            labels,
            format!(
                "holds {} labels but {} holds {} images",
                lb.dims[0],
                images.display(),
                im.dims[0]
            ),
        ));
    }
    if im.dims[0] == 0 {
        return Err(idx_err(images, "holds no images"));
    }
    if let Some(l) = lb.data.iter().find(|l| **l as usize >= CLASSES) {
        return Err(idx_err(
            labels,
            format!("holds label {l}: expected labels 0..{}", CLASSES - 1),
        ));
    }
    let dim: usize = im.dims[1..].iter().product();
    if dim == 0 {
        return Err(idx_err(images, "images of 0 pixels"));
    }
    Ok((dim, im.data, lb.data))
}

impl Dataset {
    /// Loads the four MNIST-format files from `dir`, normalizing with the
    /// training set's pixel mean and standard deviation.
    pub fn load(dir: &Path) -> Result<Self> {
        let p: Vec<PathBuf> = FILES
            .iter()
            .map(|f| locate(dir, f))
            .collect::<Result<_>>()?;
        let (dim, train_px, train_lb) = raw_split(&p[0], &p[1])?;
        let (tdim, test_px, test_lb) = raw_split(&p[2], &p[3])?;
        if tdim != dim {
            return Err(idx_err(
                &p[2],
                format!("has images of {tdim} pixels but the training images have {dim}"),
            ));
        }
        let (mut s, mut s2) = (0f64, 0f64);
        for &v in &train_px {
            let x = v as f64 / 255.0;
            s += x;
            s2 += x * x;
        }
        let n = train_px.len() as f64;
        let mean = s / n;
        let std = (s2 / n - mean * mean).max(0.0).sqrt();
        if std <= 0.0 {
            return Err(idx_err(
                &p[0],
                "every pixel has the same value: the images cannot be normalized",
            ));
        }
        let norm = |px: &[u8]| -> Vec<f32> {
            px.iter()
                .map(|&v| ((v as f64 / 255.0 - mean) / std) as f32)
                .collect()
        };
        Ok(Dataset {
            train: Split {
                dim,
                images: norm(&train_px),
                labels: train_lb,
            },
            test: Split {
                dim,
                images: norm(&test_px),
                labels: test_lb,
            },
            mean,
            std,
        })
    }
}

/// A permutation of 0..n drawn from (seed, epoch) by Fisher–Yates with the
/// project's counter-based generator (Philox4x32-10), so it is the same on
/// every machine and for every thread count.
pub fn permutation(n: usize, seed: u64, epoch: u32) -> Vec<u32> {
    let key = crate::rng::key_for(seed);
    let mut p: Vec<u32> = (0..n as u32).collect();
    for i in (1..n).rev() {
        // Two words make a 64-bit draw; the modulo bias is below 2^-32 for n < 2^32.
        let w = philox4x32_10([i as u32, epoch, 0x5348_5546, 0x4441_5441], key);
        let r = ((w[0] as u64) << 32 | w[1] as u64) % (i as u64 + 1);
        p.swap(i, r as usize);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn parses_a_well_formed_array() {
        let a = parse_idx(Path::new("x"), &idx(&[2, 3], &[1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(a.dims, vec![2, 3]);
        assert_eq!(a.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn errors_name_the_file_and_the_fault() {
        let p = Path::new("/data/train-images-idx3-ubyte");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![0, 0], "shorter than the 4-byte"),
            (vec![1, 0, 8, 1, 0, 0, 0, 0], "magic number starts 01 00"),
            (vec![0, 0, 0x0d, 1, 0, 0, 0, 0], "element type 0x0d"),
            (vec![0, 0, 8, 3, 0, 0, 0, 2], "shorter than its header"),
            (
                idx(&[2, 3], &[1, 2, 3, 4, 5]),
                "truncated: dimensions [2, 3] call for 6 bytes",
            ),
            (idx(&[1, 2], &[1, 2, 3]), "trailing bytes"),
        ];
        for (bytes, want) in cases {
            let e = parse_idx(p, &bytes).unwrap_err().to_string();
            assert!(e.contains("/data/train-images-idx3-ubyte"), "{e}");
            assert!(e.contains(want), "expected «{want}» in «{e}»");
        }
    }

    #[test]
    fn permutation_is_a_deterministic_shuffle() {
        let a = permutation(1000, 7, 0);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<u32>>());
        assert_eq!(a, permutation(1000, 7, 0));
        assert_ne!(a, permutation(1000, 7, 1));
        assert_ne!(a, permutation(1000, 8, 0));
        // A uniform shuffle leaves about one fixed point (Poisson(1)); 20 is
        // far beyond any plausible draw.
        let fixed = a
            .iter()
            .enumerate()
            .filter(|(i, v)| *i as u32 == **v)
            .count();
        assert!(fixed < 20, "{fixed} fixed points");
    }

    /// Writes an MNIST-format folder of tiny images (4×4), gzipped or not.
    pub(crate) fn write_fixture(dir: &Path, train: usize, test: usize, gz: bool) {
        use std::io::Write;
        std::fs::create_dir_all(dir).unwrap();
        let put = |name: &str, bytes: Vec<u8>| {
            if gz {
                let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                e.write_all(&bytes).unwrap();
                e.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        };
        for (k, count) in [(0usize, train), (2, test)] {
            let px: Vec<u8> = (0..count * 16)
                .map(|i| ((i * 37 + k) % 256) as u8)
                .collect();
            let lb: Vec<u8> = (0..count).map(|i| (i % CLASSES) as u8).collect();
            put(FILES[k], idx(&[count as u32, 4, 4], &px));
            put(FILES[k + 1], idx(&[count as u32], &lb));
        }
    }

    #[test]
    fn loads_gzipped_and_plain_folders_with_normalization() {
        let base = std::env::temp_dir().join(format!("quantdepth-idx-{}", std::process::id()));
        for gz in [true, false] {
            let dir = base.join(if gz { "gz" } else { "plain" });
            write_fixture(&dir, 30, 20, gz);
            let d = Dataset::load(&dir).unwrap();
            assert_eq!((d.train.len(), d.test.len(), d.train.dim), (30, 20, 16));
            assert_eq!(d.test.labels[13], 3);
            // The training pixels are normalized to mean 0 and variance 1
            // exactly (up to f32 rounding of 480 values).
            let n = d.train.images.len() as f64;
            let m: f64 = d.train.images.iter().map(|&x| x as f64).sum::<f64>() / n;
            let v: f64 = d
                .train
                .images
                .iter()
                .map(|&x| (x as f64 - m).powi(2))
                .sum::<f64>()
                / n;
            assert!(
                m.abs() < 1e-6 && (v - 1.0).abs() < 1e-5,
                "mean {m}, var {v}"
            );
        }
        // Mismatched counts: 30 images, 29 labels.
        let dir = base.join("mismatch");
        write_fixture(&dir, 30, 20, false);
        let lb: Vec<u8> = (0..29).map(|i| (i % 10) as u8).collect();
        std::fs::write(dir.join(FILES[1]), idx(&[29], &lb)).unwrap();
        let e = Dataset::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("holds 29 labels") && e.contains("30 images"),
            "{e}"
        );
        // A truncated gzip stream.
        let dir = base.join("cut");
        write_fixture(&dir, 30, 20, true);
        let f = dir.join(format!("{}.gz", FILES[2]));
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() / 2]).unwrap();
        let e = Dataset::load(&dir).unwrap_err().to_string();
        assert!(
            e.contains("t10k-images-idx3-ubyte.gz") && e.contains("gzip"),
            "{e}"
        );
        // A missing file.
        let e = Dataset::load(&base.join("nowhere"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("data.dir") && e.contains("train-images-idx3-ubyte"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(&base);
    }
}
