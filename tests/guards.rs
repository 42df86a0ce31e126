//! scratch
#[test]
fn scratch_time_curve() {
    use quantdepth::activation::{Activation, Quantizer};
    let q = Quantizer::uniform(1024, 0.0095, 1.0).unwrap();
    for c in [0.3, 0.5, 0.9, 0.99, 0.999999] {
        let t = std::time::Instant::now();
        let v = q.cross_moment(1.0, 1.0, c);
        eprintln!("c={c}: {:?} {v}", t.elapsed());
    }
    let t = std::time::Instant::now();
    let v = q.cross_moment_dc(1.0, 1.0, 0.5);
    eprintln!("dc: {:?} {v}", t.elapsed());
    let _ = Activation::Linear;
}
