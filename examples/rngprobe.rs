use quantdepth::rng::*;
use std::time::Instant;
fn main() {
    let s = Stream::new(1, 0);
    let mut row = vec![0f32; 4096];
    let t = Instant::now();
    for r in 0..2000 { s.fill_row(1, r, &mut row); }
    let e = t.elapsed().as_secs_f64();
    println!("fill_row: {:.2} ns/normal  {}", e / (2000.0 * 4096.0) * 1e9, row[5]);
    let t = Instant::now();
    let mut acc = 0u32;
    for r in 0..2000u32 { for j in 0..1024u32 { let w = philox4x32_10([j, r, 1, 0], s.key); acc ^= w[0] ^ w[1] ^ w[2] ^ w[3]; } }
    let e = t.elapsed().as_secs_f64();
    println!("scalar philox: {:.2} ns/normal {}", e / (2000.0 * 4096.0) * 1e9, acc);
    let t = Instant::now();
    let mut accf = 0f32;
    for r in 0..2000u32 { for j in 0..1024u32 { let z = box_muller([j.wrapping_mul(2654435761), r ^ j, j, r]); accf += z[0] + z[1] + z[2] + z[3]; } }
    let e = t.elapsed().as_secs_f64();
    println!("scalar bm: {:.2} ns/normal {}", e / (2000.0 * 4096.0) * 1e9, accf);
}
