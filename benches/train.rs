//! Training throughput: multiply-adds per second of one SGD step (forward,
//! backward through the transposed weights, weight gradient and update;
//! 3·B·Σ fan_in·fan_out − B·784·n per step: the first layer's input gradient
//! is never computed), on the CPU, and on a hardware GPU when there is one.
//!
//! In one run, per width and thread count: the fused step the CPU backend
//! runs (src/train/fused.rs) beside the plain twin (`Trainer::step`, whose
//! products go through `matrixmultiply`, the path before the fused one);
//! each fused product alone on an n × n layer beside the simulator's packed
//! product (`sim::gemm::product`, weights already in panels) at the same n
//! and B; and the core's FMA peak from a probe (12 independent chains of
//! 8-wide FMAs). On a GPU (a hardware one, or any with `--gpu-software 1`):
//! the step with the default product tiles and with each tile variant
//! forced (`train::gpu::Tile`), wall time to completion. Rates are per CPU-second of the process (the machine may be
//! shared: wall time swings with load; CPU time does not count the time
//! other processes take), with the wall-clock rate beside them.
//!
//!     cargo bench --bench train [-- --widths 512,2048 --batch 32 --depth 16 --threads 1,2 --gpu-software 0]

use quantdepth::rng::Stream;
use quantdepth::sim::gemm::{self as simgemm, Kernel, PackedActs, MR};
use quantdepth::sim::gpu::AdapterPolicy;
use quantdepth::train::cpu::Trainer;
use quantdepth::train::gemm::{
    forward, input_grad, pack_columns, pack_transposed, pad_rows_cols, weight_update,
};
use quantdepth::train::gpu::{GpuTrainBackend, Tile};
use quantdepth::train::model::{theory_init, ModelSpec, Params, Phi, Preset};
use quantdepth::train::{CpuTrainBackend, TrainBackend};
use std::time::Instant;

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn list(name: &str, default: &str) -> Vec<usize> {
    arg(name, default)
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("{name}: whole numbers, comma-separated"))
        })
        .collect()
}

fn spec(width: usize, depth: usize) -> ModelSpec {
    let init = theory_init(4, Preset::Theory, 1.0, 0.0, 0.0, 1.0, 1.0).expect("N = 4");
    ModelSpec {
        input_dim: 784,
        width,
        depth,
        classes: 10,
        phi: Phi::Uniform {
            states: 4,
            spacing: init.spacing,
            amplitude: 1.0,
        },
        ste_slope: init.ste_slope,
        ste_threshold: 1.0,
        sigma_w: init.sigma_w,
        sigma_b: 0.0,
        quantize_logits: false,
    }
}

/// CPU seconds of this process (all threads).
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec, which `t` is.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID)");
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

/// Multiply-adds per CPU-second and per wall-second.
#[derive(Clone, Copy)]
struct Rate {
    cpu: f64,
    wall: f64,
}

/// `f` run `iters` times after one warm-up call, three times over; the run
/// with the least CPU time.
fn measure(macs_per_call: f64, iters: usize, mut f: impl FnMut()) -> Rate {
    f();
    let mut best: Option<Rate> = None;
    for _ in 0..3 {
        let (c, w) = (cpu_seconds(), Instant::now());
        for _ in 0..iters {
            f();
        }
        let (c, w) = (cpu_seconds() - c, w.elapsed().as_secs_f64());
        let macs = macs_per_call * iters as f64;
        let r = Rate {
            cpu: macs / c.max(1e-9),
            wall: macs / w,
        };
        if best.is_none_or(|b| r.cpu > b.cpu) {
            best = Some(r);
        }
    }
    best.expect("three runs")
}

/// The FMA peak of one core in multiply-adds per CPU-second: 12 independent
/// chains of 8-wide FMAs (enough to cover the FMA latency on every x86 core
/// of the last decade), one thread.
fn fma_peak() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    if Kernel::detect() != Kernel::Portable {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn chains(iters: usize) -> f32 {
            use std::arch::x86_64::*;
            let (x, y) = (_mm256_set1_ps(0.999_999), _mm256_set1_ps(1e-7));
            let mut acc = [_mm256_set1_ps(1.0); 12];
            for _ in 0..iters {
                for a in acc.iter_mut() {
                    *a = _mm256_fmadd_ps(*a, x, y);
                }
            }
            let mut s = [0f32; 8];
            let sum = acc
                .iter()
                .fold(_mm256_setzero_ps(), |s, &a| _mm256_add_ps(s, a));
            _mm256_storeu_ps(s.as_mut_ptr(), sum);
            s.iter().sum()
        }
        let iters = 20_000_000;
        let mut best = 0f64;
        for _ in 0..3 {
            let c = cpu_seconds();
            // SAFETY: Kernel::detect found AVX2 and FMA.
            std::hint::black_box(unsafe { chains(iters) });
            best = best.max((iters * 12 * 8) as f64 / (cpu_seconds() - c));
        }
        return Some(best);
    }
    None
}

/// Steps per timing: about 1.5e9 multiply-adds, at least 2.
fn steps_for(macs: f64) -> usize {
    (1.5e9 / macs).clamp(2.0, 200.0) as usize
}

fn train_rate(b: &mut dyn TrainBackend, spec: &ModelSpec, batch: usize, steps: usize) -> Rate {
    let p = Params::init(spec, 1);
    b.load(spec, &p).expect("load");
    let x = {
        let mut x = vec![0f32; spec.input_dim * batch];
        Stream::new(5, 0).fill_row(0, 0, &mut x);
        x
    };
    let y: Vec<u8> = (0..batch).map(|j| (j % 10) as u8).collect();
    let r = measure(spec.step_macs() * batch as f64, steps, || {
        b.step(&x, &y, 1e-3, 0.5).expect("step");
    });
    b.take_loss().expect("sync");
    r
}

fn plain_rate(spec: &ModelSpec, batch: usize, steps: usize) -> Rate {
    let mut t = Trainer::new(spec, Params::init(spec, 1));
    let mut x = vec![0f32; spec.input_dim * batch];
    Stream::new(5, 0).fill_row(0, 0, &mut x);
    let y: Vec<u8> = (0..batch).map(|j| (j % 10) as u8).collect();
    measure(spec.step_macs() * batch as f64, steps, || {
        t.step(&x, &y, 1e-3, 0.5);
    })
}

/// Each fused product alone on an n × n layer with B columns, and the
/// simulator's packed product at the same size: [forward, input gradient,
/// weight update, simulator].
fn product_rates(n: usize, b: usize) -> [Rate; 4] {
    let kernel = Kernel::detect();
    let fill = |seed: u32, len: usize| {
        let mut v = vec![0f32; len];
        Stream::new(11, seed).fill_row(0, 0, &mut v);
        v
    };
    let (mut w, mut v) = (fill(1, n * n), vec![0f32; n * n]);
    let (x, g, bias) = (fill(2, n * b), fill(3, n * b), vec![0f32; n]);
    let (mut pack, mut gpad, mut packt) = (Vec::new(), Vec::new(), Vec::new());
    pack_columns(&x, n, b, &mut pack);
    pack_transposed(&x, n, b, &mut packt);
    let stride = pad_rows_cols(&g, n, b, &mut gpad);
    let (mut h, mut a, mut out) = (vec![0f32; n * b], vec![0f32; n * b], vec![0f32; n * b]);
    let macs = (n * n * b) as f64;
    let iters = (1e9 / macs).clamp(2.0, 100.0) as usize;
    let phi = |v: f32| v.signum();
    let fwd = measure(macs, iters, || {
        forward(
            kernel,
            &w,
            (n, n),
            &pack,
            b,
            &bias,
            &mut h,
            &mut a,
            Some(&phi),
        );
    });
    let igrad = measure(macs, iters, || {
        input_grad(kernel, &w, (n, n), &gpad, stride, b, &mut out, &|_, _| 1.0);
    });
    let wupd = measure(macs, iters, || {
        weight_update(
            kernel,
            &mut w,
            &mut v,
            (n, n),
            &gpad,
            stride,
            &packt,
            b,
            (1e-9, 0.5),
        );
    });
    // The simulator's product with its weights already in MR-row panels
    // (a panel copy per k-slice instead of generating them).
    let acts = PackedActs::pack(&x, n, b);
    let panels: Vec<f32> = {
        let mut p = vec![0f32; n.div_ceil(MR) * MR * n];
        for r in 0..n {
            for k in 0..n {
                p[(r / MR) * MR * n + k * MR + r % MR] = w[r * n + k];
            }
        }
        p
    };
    let mut sim_out = vec![0f32; n * b];
    let sim = measure(macs, iters, || {
        use rayon::prelude::*;
        let rows = simgemm::block_rows(n);
        sim_out
            .par_chunks_mut(rows * b)
            .enumerate()
            .for_each_init(Vec::new, |scr, (blk, o)| {
                let r0 = blk * rows;
                simgemm::product(
                    kernel,
                    &acts,
                    |i, rr, k0, panel: &mut [f32]| {
                        let len = panel.len() / MR;
                        let src = &panels[((r0 + i) / MR) * MR * n + k0 * MR..][..len * MR];
                        panel.copy_from_slice(src);
                        let _ = rr;
                    },
                    scr,
                    o,
                );
            });
    });
    [fwd, igrad, wupd, sim]
}

fn main() {
    let widths = list("--widths", "512,2048");
    let batch: usize = arg("--batch", "32")
        .parse()
        .expect("--batch: a whole number");
    let depth: usize = arg("--depth", "16")
        .parse()
        .expect("--depth: a whole number");
    let threads = list("--threads", "1,2");
    let peak = fma_peak();
    println!(
        "CPU: {} logical cores, kernel {:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        Kernel::detect()
    );
    match peak {
        Some(p) => println!("FMA peak (probe, one core): {p:.3e} MAC per CPU-second"),
        None => println!("FMA peak: no AVX2+FMA on this CPU, fractions of peak not given"),
    }
    let frac = |r: f64| peak.map_or("-".to_string(), |p| format!("{:.0}%", 100.0 * r / p));
    println!("rates: multiply-adds per CPU-second (per wall-second in brackets); % of one core's FMA peak");
    println!(
        "{:>5} {:>3} {:>2} | {:>22} {:>22} {:>5} {:>5} | {:>9} {:>9} {:>9} {:>9}  products as % of sim",
        "n",
        "B",
        "t",
        "plain step",
        "fused step",
        "%pk",
        "×pl",
        "fwd",
        "in-grad",
        "w-upd",
        "sim",
    );
    for &n in &widths {
        let s = spec(n, depth);
        let steps = steps_for(s.step_macs() * batch as f64);
        for &t in &threads {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("thread pool");
            let (plain, fused, prods) = pool.install(|| {
                let plain = plain_rate(&s, batch, steps);
                let fused = train_rate(&mut CpuTrainBackend::default(), &s, batch, steps);
                (plain, fused, product_rates(n, batch))
            });
            let pc = |r: &Rate| format!("{:.0}%", 100.0 * r.cpu / prods[3].cpu);
            println!(
                "{n:>5} {batch:>3} {t:>2} | {:>10.3e} ({:.2e}) {:>10.3e} ({:.2e}) {:>5} {:>5.2} | {:>9.2e} {:>9.2e} {:>9.2e} {:>9.2e}  {} {} {}",
                plain.cpu, plain.wall, fused.cpu, fused.wall, frac(fused.cpu), fused.cpu / plain.cpu,
                prods[0].cpu, prods[1].cpu, prods[2].cpu, prods[3].cpu, pc(&prods[0]), pc(&prods[1]), pc(&prods[2])
            );
        }
    }
    // The GPU: the default tiles (by each product's shape) and each tile
    // variant forced on every product; `--gpu-software 1` also times a
    // software adapter (lavapipe: a check that the path runs, not a GPU figure).
    let policy = if arg("--gpu-software", "0") == "1" {
        AdapterPolicy::PreferHardware
    } else {
        AdapterPolicy::HardwareOnly
    };
    if let Ok(mut gpu) = GpuTrainBackend::new(policy) {
        println!("GPU: {}", gpu.context().describe());
        println!("    n   B tile     step MAC/s (wall, synchronized)");
        for &n in &widths {
            let s = spec(n, depth);
            let steps = steps_for(s.step_macs() * batch as f64);
            let tiles = std::iter::once(None).chain(Tile::ALL.map(Some));
            for tile in tiles {
                gpu.set_tile(tile);
                let r = gpu_rate(&mut gpu, &s, batch, steps);
                let name = tile.map_or("default".to_string(), Tile::name);
                println!("{n:>5} {batch:>3} {name:<8} {:.3e}", r.wall);
            }
        }
    } else {
        println!("GPU: no hardware adapter (--gpu-software 1 takes a software one)");
    }
}

/// Training steps on the GPU, timed to completion: each timed run ends with
/// a read-back of the loss (which waits for every step submitted), so the
/// rate is of work done, not of submissions queued.
fn gpu_rate(gpu: &mut GpuTrainBackend, spec: &ModelSpec, batch: usize, steps: usize) -> Rate {
    let p = Params::init(spec, 1);
    gpu.load(spec, &p).expect("load");
    let mut x = vec![0f32; spec.input_dim * batch];
    Stream::new(5, 0).fill_row(0, 0, &mut x);
    let y: Vec<u8> = (0..batch).map(|j| (j % 10) as u8).collect();
    let mut run = |k: usize| {
        for _ in 0..k {
            gpu.step(&x, &y, 1e-3, 0.5).expect("step");
        }
        gpu.take_loss().expect("sync");
    };
    run(2);
    // Enough steps for ~0.2 s at the first estimate's rate.
    let t = Instant::now();
    run(steps.max(1));
    let per = t.elapsed().as_secs_f64() / steps.max(1) as f64;
    let iters = ((0.2 / per.max(1e-9)) as usize).clamp(1, 10_000);
    let mut best = 0f64;
    for _ in 0..3 {
        let t = Instant::now();
        run(iters);
        best = best.max(spec.step_macs() * batch as f64 * iters as f64 / t.elapsed().as_secs_f64());
    }
    Rate {
        cpu: f64::NAN,
        wall: best,
    }
}
