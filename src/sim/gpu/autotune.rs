//! Choosing a layer-kernel variant by measurement, with a cache.
//!
//! On first use of an (adapter, backend, driver, driver version, n, B,
//! stack S of networks per dispatch, weight ensemble) the GPU backend times each applicable
//! [`KernelVariant`] over a few layers (device timestamps where the adapter
//! has them, else wall clock around submit and wait) and keeps the fastest.
//! Times are per network-layer: a stacked variant's dispatch over S
//! networks counts S network-layers, so it is compared fairly with the
//! others; S is part of the key, as the stacked candidates depend on it.
//! The choice is cached as JSON in the user's cache folder
//! ([`default_cache_dir`]: `$QUANTDEPTH_CACHE_DIR`, else
//! `$XDG_CACHE_HOME/quantdepth`, else `~/.cache/quantdepth`), file
//! `kernels.json`, written atomically (temporary file + rename). A corrupt
//! or unreadable cache file is reported once and replaced; a cache folder
//! that cannot be written means tuning each time, with one warning. A new
//! driver version is a new key: it misses the cache and is tuned again.
//! The timing function is passed in, so the choice logic is testable with
//! injected timings.

use super::variant::KernelVariant;
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// File name of the cache inside the cache folder.
pub const CACHE_FILE: &str = "kernels.json";
/// Version of the cache file's layout (a file of another version is replaced).
const CACHE_FORMAT: u32 = 1;

/// Largest cache file read (an entry is a few hundred bytes).
const CACHE_CAP: u64 = 16 << 20;

/// What a tuned choice depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TuneKey {
    /// Adapter name.
    pub adapter: String,
    /// wgpu backend (Vulkan, Metal, …).
    pub backend: String,
    /// Driver name.
    pub driver: String,
    /// Driver version string.
    pub driver_info: String,
    /// Width n.
    pub n: usize,
    /// Batch per pass B.
    pub batch: usize,
    /// Network samples per dispatch S offered to the stacked variants (1:
    /// one network, no stacked candidate).
    pub stack: usize,
    /// Weight ensemble name.
    pub weights: String,
}

impl TuneKey {
    /// The key's text in the cache file (` S=…` only for a stack of
    /// several networks, so one network's keys read as before).
    pub fn id(&self) -> String {
        format!(
            "{} | {} | {} | {} | n={} B={}{} {}",
            self.adapter,
            self.backend,
            self.driver,
            self.driver_info,
            self.n,
            self.batch,
            self.stack_text(),
            self.weights
        )
    }

    /// ` S=4` for a stack of 4 networks, empty for one.
    fn stack_text(&self) -> String {
        if self.stack > 1 {
            format!(" S={}", self.stack)
        } else {
            String::new()
        }
    }
}

/// One cached choice: the variant and the timings it won with.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CacheEntry {
    /// The fastest variant's name.
    pub variant: String,
    /// Seconds per layer of every variant timed.
    pub seconds_per_layer: BTreeMap<String, f64>,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct CacheFile {
    format: u32,
    entries: BTreeMap<String, CacheEntry>,
}

/// The cache folder: `$QUANTDEPTH_CACHE_DIR`, else `$XDG_CACHE_HOME/quantdepth`,
/// else `$HOME/.cache/quantdepth`; `None` when none of them is set.
pub fn default_cache_dir() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = var("QUANTDEPTH_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("quantdepth"));
    }
    var("HOME").map(|h| PathBuf::from(h).join(".cache").join("quantdepth"))
}

/// The fastest of `timings` (seconds per layer); ties go to the earlier
/// variant in [`KernelVariant::ALL`] order; timings that are not finite and
/// positive are ignored. `None` when no timing is usable.
pub fn pick_fastest(timings: &[(KernelVariant, f64)]) -> Option<KernelVariant> {
    timings
        .iter()
        .filter(|(_, t)| t.is_finite() && *t > 0.0)
        .min_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)))
        .map(|(v, _)| *v)
}

/// How a variant was chosen.
#[derive(Debug, Clone, PartialEq)]
pub enum Chosen {
    /// Read from the cache (or this process's memory of it).
    Cached(KernelVariant),
    /// Timed now: the winner and every timing.
    Tuned(KernelVariant, Vec<(KernelVariant, f64)>),
}

impl Chosen {
    /// The chosen variant.
    pub fn variant(&self) -> KernelVariant {
        match self {
            Chosen::Cached(v) | Chosen::Tuned(v, _) => *v,
        }
    }
}

/// Chooses variants by timing them, remembering choices in memory and in
/// the cache file. Warnings (corrupt cache, read-only folder) go to
/// `notify`, each kind once per tuner.
pub struct Tuner {
    dir: Option<PathBuf>,
    memo: HashMap<TuneKey, KernelVariant>,
    warned_corrupt: bool,
    warned_write: bool,
    notify: Box<dyn FnMut(&str) + Send>,
}

impl std::fmt::Debug for Tuner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuner")
            .field("dir", &self.dir)
            .field("memo", &self.memo)
            .finish()
    }
}

impl Tuner {
    /// A tuner caching in `dir` (`None`: memory only), warning on stderr.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Tuner {
            dir,
            memo: HashMap::new(),
            warned_corrupt: false,
            warned_write: false,
            notify: Box::new(|m| {
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "{m}");
            }),
        }
    }

    /// Sends warnings to `notify` instead of stderr.
    pub fn with_notify(mut self, notify: Box<dyn FnMut(&str) + Send>) -> Self {
        self.notify = notify;
        self
    }

    /// The cache file's path, if there is a cache folder.
    pub fn cache_file(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(CACHE_FILE))
    }

    /// The variant for `key` among `candidates` (non-empty, in
    /// [`KernelVariant::ALL`] order): from memory, else from the cache file
    /// (when it names a candidate), else by calling `time(variant)` (seconds
    /// per layer) for each candidate and keeping the fastest, written back
    /// to the cache. A single candidate is taken without timing.
    pub fn choose(
        &mut self,
        key: &TuneKey,
        candidates: &[KernelVariant],
        time: &mut dyn FnMut(KernelVariant) -> Result<f64>,
    ) -> Result<Chosen> {
        let Some(&first) = candidates.first() else {
            return Err(Error::Gpu(format!(
                "no layer kernel variant applies at n = {}, B = {}",
                key.n, key.batch
            )));
        };
        if let Some(v) = self.memo.get(key).filter(|v| candidates.contains(v)) {
            return Ok(Chosen::Cached(*v));
        }
        if candidates.len() == 1 {
            self.memo.insert(key.clone(), first);
            return Ok(Chosen::Cached(first));
        }
        let mut file = self.read();
        if let Some(v) = file
            .entries
            .get(&key.id())
            .and_then(|e| KernelVariant::from_name(&e.variant))
            .filter(|v| candidates.contains(v))
        {
            self.memo.insert(key.clone(), v);
            return Ok(Chosen::Cached(v));
        }
        let names: Vec<&str> = candidates.iter().map(|v| v.name()).collect();
        let cached_in = match self.cache_file() {
            Some(f) => format!("; the choice is cached in {}", f.display()),
            None => String::new(),
        };
        (self.notify)(&format!(
            "tuning the GPU layer kernel for n = {}, B = {}{}, {} weights on {} (first use): \
             timing {} over a few layers{}",
            key.n,
            key.batch,
            if key.stack > 1 {
                format!(" ({} networks per stacked dispatch)", key.stack)
            } else {
                String::new()
            },
            key.weights,
            key.adapter,
            names.join(", "),
            cached_in
        ));
        let mut timings = Vec::with_capacity(candidates.len());
        for &v in candidates {
            timings.push((v, time(v)?));
        }
        let best = pick_fastest(&timings).ok_or_else(|| {
            Error::Gpu(format!(
                "timing the layer kernels at n = {}, B = {} gave no usable time: {timings:?}",
                key.n, key.batch
            ))
        })?;
        self.memo.insert(key.clone(), best);
        file.entries.insert(
            key.id(),
            CacheEntry {
                variant: best.name().to_string(),
                seconds_per_layer: timings
                    .iter()
                    .map(|(v, t)| (v.name().to_string(), *t))
                    .collect(),
            },
        );
        self.write(&file);
        Ok(Chosen::Tuned(best, timings))
    }

    /// The cache file's entries; an absent file is empty, a corrupt or
    /// unreadable one is reported (once) and treated as empty.
    fn read(&mut self) -> CacheFile {
        let empty = CacheFile {
            format: CACHE_FORMAT,
            entries: BTreeMap::new(),
        };
        let Some(path) = self.cache_file() else {
            return empty;
        };
        // A regular file of at most 16 MiB (a FIFO or a device there is
        // reported and replaced, never waited on or read on and on).
        let problem = match crate::safe_fs::read_capped(&path, CACHE_CAP) {
            Ok(bytes) => match serde_json::from_slice::<CacheFile>(&bytes) {
                Ok(f) if f.format == CACHE_FORMAT => return f,
                Ok(f) => format!("it has format {}, not {CACHE_FORMAT}", f.format),
                Err(e) => format!("it is not a kernel cache ({e})"),
            },
            // No file, or no folder (a file where the folder should be): nothing cached.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return empty
            }
            Err(e) => format!("it cannot be read ({e})"),
        };
        if !self.warned_corrupt {
            self.warned_corrupt = true;
            (self.notify)(&format!(
                "warning: kernel tuning cache {}: {problem}; tuning again and replacing it",
                path.display()
            ));
        }
        empty
    }

    /// Writes the cache atomically; a failure is reported once and
    /// otherwise ignored (the choice stays in memory for this process).
    fn write(&mut self, file: &CacheFile) {
        let Some(dir) = self.dir.clone() else { return };
        if let Err(e) = write_atomically(&dir, file) {
            if !self.warned_write {
                self.warned_write = true;
                (self.notify)(&format!(
                    "warning: cannot write the kernel tuning cache in {} ({e}); kernels will be \
                     tuned again in each run (set QUANTDEPTH_CACHE_DIR to a writable folder)",
                    dir.display()
                ));
            }
        }
    }
}

fn write_atomically(dir: &Path, file: &CacheFile) -> std::io::Result<()> {
    use std::io::Write;
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(".{CACHE_FILE}.{}.tmp", std::process::id()));
    // Created new (never through a link), renamed over the cache file (a
    // link or a FIFO there is replaced, its target untouched).
    let _ = crate::safe_fs::remove_entry(&tmp);
    crate::safe_fs::create_new(&tmp)?.write_all(&json)?;
    std::fs::rename(&tmp, dir.join(CACHE_FILE)).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use KernelVariant as K;

    fn key(driver_info: &str) -> TuneKey {
        TuneKey {
            adapter: "Test GPU".into(),
            backend: "Vulkan".into(),
            driver: "testdrv".into(),
            driver_info: driver_info.into(),
            n: 256,
            batch: 16,
            stack: 1,
            weights: "gaussian".into(),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("quantdepth-autotune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    /// The warnings among the notices `seen`.
    fn warnings(seen: &Mutex<Vec<String>>) -> Vec<String> {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with("warning"))
            .cloned()
            .collect()
    }

    fn injected(t: &'static [(K, f64)], calls: Arc<Mutex<Vec<K>>>) -> impl FnMut(K) -> Result<f64> {
        move |v| {
            calls.lock().unwrap().push(v);
            Ok(t.iter().find(|(k, _)| *k == v).unwrap().1)
        }
    }

    #[test]
    fn picks_the_fastest_of_injected_timings() {
        assert_eq!(
            pick_fastest(&[(K::Tiled, 3.0), (K::SplitK, 1.0), (K::Wide, 2.0)]),
            Some(K::SplitK)
        );
        // Ties go to the earlier variant; NaN, ∞ and 0 are ignored.
        assert_eq!(
            pick_fastest(&[(K::SplitK, 1.0), (K::Tiled, 1.0)]),
            Some(K::Tiled)
        );
        assert_eq!(
            pick_fastest(&[(K::Tiled, f64::NAN), (K::Wide, 5.0), (K::SplitK, 0.0)]),
            Some(K::Wide)
        );
        assert_eq!(pick_fastest(&[(K::Tiled, f64::INFINITY)]), None);
    }

    #[test]
    fn tunes_once_then_reads_the_cache_and_a_new_driver_retunes() {
        let dir = temp_dir("cache");
        let calls = Arc::new(Mutex::new(Vec::new()));
        const T: &[(K, f64)] = &[(K::Tiled, 2e-3), (K::SplitK, 1e-3)];
        let cands = [K::Tiled, K::SplitK];
        let mut t = Tuner::new(Some(dir.clone()));
        let c = t
            .choose(&key("1.0"), &cands, &mut injected(T, calls.clone()))
            .unwrap();
        assert!(matches!(c, Chosen::Tuned(K::SplitK, _)), "{c:?}");
        assert_eq!(calls.lock().unwrap().len(), 2);
        assert!(dir.join(CACHE_FILE).is_file());
        // A fresh tuner (a new process) reads the file: no timing.
        let mut t2 = Tuner::new(Some(dir.clone()));
        let c = t2
            .choose(&key("1.0"), &cands, &mut injected(T, calls.clone()))
            .unwrap();
        assert_eq!(c, Chosen::Cached(K::SplitK));
        assert_eq!(calls.lock().unwrap().len(), 2);
        // Another driver version: a miss, tuned again, both kept.
        let c = t2
            .choose(&key("1.1"), &cands, &mut injected(T, calls.clone()))
            .unwrap();
        assert!(matches!(c, Chosen::Tuned(K::SplitK, _)));
        assert_eq!(calls.lock().unwrap().len(), 4);
        let text = std::fs::read_to_string(dir.join(CACHE_FILE)).unwrap();
        assert!(
            text.contains("testdrv | 1.0") && text.contains("testdrv | 1.1"),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_cache_is_reported_once_and_replaced() {
        let dir = temp_dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(CACHE_FILE), b"{ not json").unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let mut t = Tuner::new(Some(dir.clone()))
            .with_notify(Box::new(move |m| sink.lock().unwrap().push(m.to_string())));
        let calls = Arc::new(Mutex::new(Vec::new()));
        const T: &[(K, f64)] = &[(K::Tiled, 1e-3), (K::SplitK, 2e-3)];
        let c = t
            .choose(
                &key("1"),
                &[K::Tiled, K::SplitK],
                &mut injected(T, calls.clone()),
            )
            .unwrap();
        assert_eq!(c.variant(), K::Tiled);
        let mut other = key("1");
        other.n = 512;
        // The file is valid now; make it corrupt again: still one warning.
        std::fs::write(dir.join(CACHE_FILE), b"garbage").unwrap();
        t.choose(&other, &[K::Tiled, K::SplitK], &mut injected(T, calls))
            .unwrap();
        let seen = warnings(&seen);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].contains("kernels.json") && seen[0].contains("replacing"),
            "{}",
            seen[0]
        );
        let text = std::fs::read_to_string(dir.join(CACHE_FILE)).unwrap();
        let f: CacheFile = serde_json::from_str(&text).unwrap();
        assert_eq!(
            f.entries.len(),
            1,
            "the replaced file holds the new entry: {text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A FIFO as kernels.json hung the tuner forever (a read waits for a
    /// writer) and a link to /dev/zero read until memory ran out: each is
    /// now reported within the 20 s bound (it takes milliseconds) as not a
    /// regular file and replaced by the cache, the device untouched.
    #[test]
    fn a_fifo_or_a_device_as_the_cache_is_reported_and_replaced_not_read() {
        for what in ["fifo", "zero"] {
            let dir = temp_dir(what);
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(CACHE_FILE);
            if what == "fifo" {
                let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
                // SAFETY: a valid NUL-terminated path.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            } else {
                std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
            }
            let (tx, rx) = std::sync::mpsc::channel();
            let d = dir.clone();
            std::thread::spawn(move || {
                let seen = Arc::new(Mutex::new(Vec::<String>::new()));
                let sink = seen.clone();
                let mut t = Tuner::new(Some(d))
                    .with_notify(Box::new(move |m| sink.lock().unwrap().push(m.to_string())));
                const T: &[(K, f64)] = &[(K::Tiled, 1e-3), (K::SplitK, 2e-3)];
                let calls = Arc::new(Mutex::new(Vec::new()));
                let c = t.choose(&key("1"), &[K::Tiled, K::SplitK], &mut injected(T, calls));
                let _ = tx.send((c.map(|c| c.variant()).ok(), warnings(&seen)));
            });
            let (chosen, seen) = rx
                .recv_timeout(std::time::Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("the tuner hangs on a {what} as {CACHE_FILE}"));
            assert_eq!(chosen, Some(K::Tiled));
            assert_eq!(seen.len(), 1, "{seen:?}");
            assert!(
                seen[0].contains("not a regular file") && seen[0].contains("replacing"),
                "{}",
                seen[0]
            );
            assert!(std::fs::symlink_metadata(&file).unwrap().is_file());
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[test]
    fn an_unwritable_cache_folder_warns_once_and_still_chooses() {
        // A regular file where the folder should be: creating it fails for any user.
        let blocker = temp_dir("blocked");
        std::fs::write(&blocker, b"a file").unwrap();
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let mut t = Tuner::new(Some(blocker.join("sub")))
            .with_notify(Box::new(move |m| sink.lock().unwrap().push(m.to_string())));
        let calls = Arc::new(Mutex::new(Vec::new()));
        const T: &[(K, f64)] = &[(K::Tiled, 1e-3), (K::Wide, 5e-4)];
        for n in [256, 512] {
            let mut k = key("1");
            k.n = n;
            let c = t
                .choose(&k, &[K::Tiled, K::Wide], &mut injected(T, calls.clone()))
                .unwrap();
            assert_eq!(c.variant(), K::Wide);
        }
        assert_eq!(calls.lock().unwrap().len(), 4, "each new key is timed");
        let seen = warnings(&seen);
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(seen[0].contains("tuned again"), "{}", seen[0]);
        let _ = std::fs::remove_file(&blocker);
    }

    #[test]
    fn a_cached_variant_that_no_longer_applies_is_retuned() {
        let dir = temp_dir("stale");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let mut t = Tuner::new(Some(dir.clone()));
        const T: &[(K, f64)] = &[(K::Tiled, 2e-3), (K::SplitK, 1e-3), (K::TiledInt64, 3e-3)];
        t.choose(
            &key("1"),
            &[K::Tiled, K::SplitK],
            &mut injected(T, calls.clone()),
        )
        .unwrap();
        let mut t2 = Tuner::new(Some(dir.clone()));
        let c = t2
            .choose(
                &key("1"),
                &[K::Tiled, K::TiledInt64],
                &mut injected(T, calls.clone()),
            )
            .unwrap();
        assert!(matches!(c, Chosen::Tuned(K::Tiled, _)), "{c:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
