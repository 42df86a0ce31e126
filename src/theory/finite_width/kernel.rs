//! The kernel map of two inputs and its local expansion: F(K), J = ∂F/∂K,
//! H = ∂²F/∂K² (analytic, by second-order forward differentiation through
//! the exact bivariate integrals) and the four-point covariance C(K)
//! (THEORY.md §9).
//!
//! K is the 3-vector (K_aa, K_ab, K_bb) of the pre-activation kernel of two
//! inputs a, b; F(K) = σ_b² + σ_w² E_K[φφᵀ] in the same order.

use crate::activation::Quantizer;
use crate::gauss;

/// Index of K_aa in a kernel 3-vector.
pub const AA: usize = 0;
/// Index of K_ab.
pub const AB: usize = 1;
/// Index of K_bb.
pub const BB: usize = 2;

/// A 3×3 matrix.
pub type Mat3 = [[f64; 3]; 3];

/// A value with its gradient and Hessian in the three kernel entries
/// (forward-mode differentiation to second order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Jet {
    /// Value.
    pub v: f64,
    /// Gradient.
    pub g: [f64; 3],
    /// Hessian (symmetric).
    pub h: Mat3,
}

impl Jet {
    /// A constant.
    pub fn constant(v: f64) -> Self {
        Jet {
            v,
            g: [0.0; 3],
            h: [[0.0; 3]; 3],
        }
    }

    /// The kernel entry `i` with value `v`.
    pub fn var(i: usize, v: f64) -> Self {
        let mut j = Jet::constant(v);
        j.g[i] = 1.0;
        j
    }

    /// self + o.
    pub fn add(&self, o: &Jet) -> Jet {
        let mut r = *self;
        r.v += o.v;
        for i in 0..3 {
            r.g[i] += o.g[i];
            for k in 0..3 {
                r.h[i][k] += o.h[i][k];
            }
        }
        r
    }

    /// s·self.
    pub fn scale(&self, s: f64) -> Jet {
        let mut r = *self;
        r.v *= s;
        for i in 0..3 {
            r.g[i] *= s;
            for k in 0..3 {
                r.h[i][k] *= s;
            }
        }
        r
    }

    /// self·o.
    pub fn mul(&self, o: &Jet) -> Jet {
        let mut r = Jet::constant(self.v * o.v);
        for i in 0..3 {
            r.g[i] = self.g[i] * o.v + o.g[i] * self.v;
            for k in 0..3 {
                r.h[i][k] = self.h[i][k] * o.v
                    + o.h[i][k] * self.v
                    + self.g[i] * o.g[k]
                    + o.g[i] * self.g[k];
            }
        }
        r
    }

    /// f(self) for a scalar f with value `f`, slope `d1`, curvature `d2` at self.v.
    pub fn unary(&self, f: f64, d1: f64, d2: f64) -> Jet {
        let mut r = Jet::constant(f);
        for i in 0..3 {
            r.g[i] = d1 * self.g[i];
            for k in 0..3 {
                r.h[i][k] = d1 * self.h[i][k] + d2 * self.g[i] * self.g[k];
            }
        }
        r
    }

    /// self^p (self.v > 0).
    pub fn powf(&self, p: f64) -> Jet {
        let x = self.v;
        self.unary(
            x.powf(p),
            p * x.powf(p - 1.0),
            p * (p - 1.0) * x.powf(p - 2.0),
        )
    }

    /// f(x₀, x₁, x₂) for a function with value `f`, gradient `d1` and
    /// Hessian `d2` in its own arguments, at the jets `x`.
    pub fn compose3(f: f64, d1: [f64; 3], d2: &Mat3, x: [&Jet; 3]) -> Jet {
        let mut r = Jet::constant(f);
        for i in 0..3 {
            for (a, xa) in x.iter().enumerate() {
                r.g[i] += d1[a] * xa.g[i];
            }
            for k in 0..3 {
                let mut s = 0.0;
                for (a, xa) in x.iter().enumerate() {
                    s += d1[a] * xa.h[i][k];
                    for (b, xb) in x.iter().enumerate() {
                        s += d2[a][b] * xa.g[i] * xb.g[k];
                    }
                }
                r.h[i][k] = s;
            }
        }
        r
    }
}

/// The upper orthant probability T(h, k; ρ) = P(X > h, Y > k) of standard
/// normals with correlation ρ (|ρ| < 1), with its gradient and Hessian in
/// (h, k, ρ):
///
/// T_h = −ϕ(h) Φ̄(u), u = (k − ρh)/r, r = √(1 − ρ²); T_ρ = ϕ₂(h, k; ρ);
/// T_hh = hϕ(h)Φ̄(u) − ρϕ₂; T_hk = ϕ₂; T_hρ = −ϕ₂ (h − ρk)/r²;
/// T_ρρ = ϕ₂ [ρ/r² + hk/r² − ρ(h² − 2ρhk + k²)/r⁴]; and the same with h, k swapped.
pub fn orthant(h: f64, k: f64, rho: f64) -> (f64, [f64; 3], Mat3) {
    let t = gauss::bvn_upper(h, k, rho);
    let r2 = (1.0 - rho) * (1.0 + rho);
    let r = r2.sqrt();
    let p2 = gauss::pdf2(h, k, rho);
    let u = (k - rho * h) / r;
    let w = (h - rho * k) / r;
    let (ph, pk) = (gauss::pdf(h), gauss::pdf(k));
    let (su, sw) = (gauss::sf(u), gauss::sf(w));
    let th = -ph * su;
    let tk = -pk * sw;
    let thh = h * ph * su - rho * p2;
    let tkk = k * pk * sw - rho * p2;
    let thr = -p2 * (h - rho * k) / r2;
    let tkr = -p2 * (k - rho * h) / r2;
    let q = h * h - 2.0 * rho * h * k + k * k;
    let trr = p2 * (rho / r2 + h * k / r2 - rho * q / (r2 * r2));
    (
        t,
        [th, tk, p2],
        [[thh, p2, thr], [p2, tkk, tkr], [thr, tkr, trr]],
    )
}

/// Jumps of a step function with values `levels` on the quantizer's
/// intervals: ψ(x) = ψ₀ + Σₖ (ψₖ − ψₖ₋₁) H(x − gₖ).
fn jumps(levels: &[f64]) -> Vec<f64> {
    levels.windows(2).map(|w| w[1] - w[0]).collect()
}

/// The local expansion of the kernel map at one K.
#[derive(Debug, Clone, PartialEq)]
pub struct Local {
    /// F(K).
    pub f: [f64; 3],
    /// J[x][i] = ∂F_x/∂K_i.
    pub j: Mat3,
    /// H[x][i][k] = ∂²F_x/∂K_i∂K_k.
    pub h: [Mat3; 3],
    /// σ_w⁴ C(K): n times the conditional covariance of the next layer's
    /// kernel, C_{xy,zw} = ⟨φ_xφ_yφ_zφ_w⟩ − ⟨φ_xφ_y⟩⟨φ_zφ_w⟩.
    pub noise: Mat3,
}

/// The kernel map F(K) = σ_b² + σ_w² E_K[φφᵀ] of a quantizer.
#[derive(Debug, Clone)]
pub struct KernelMap<'a> {
    quantizer: &'a Quantizer,
    sw2: f64,
    sb2: f64,
}

impl<'a> KernelMap<'a> {
    /// The map of `quantizer` with weight scale σ_w and bias scale σ_b.
    pub fn new(quantizer: &'a Quantizer, sigma_w: f64, sigma_b: f64) -> Self {
        KernelMap {
            quantizer,
            sw2: sigma_w * sigma_w,
            sb2: sigma_b * sigma_b,
        }
    }

    /// σ_w².
    pub fn sw2(&self) -> f64 {
        self.sw2
    }

    /// F, J, H and σ_w⁴C at K = (K_aa, K_ab, K_bb) with K_aa, K_bb > 0 and
    /// |ρ| = |K_ab|/√(K_aa K_bb) < 1.
    ///
    /// Cost: (N − 1)² bivariate orthant probabilities, each with its
    /// derivatives; every moment E[φ_a^p φ_b^r] (p + r ≤ 4) is a bilinear
    /// form in the same table.
    pub fn local(&self, k: [f64; 3]) -> Local {
        let y = self.quantizer.levels();
        let g = self.quantizer.thresholds();
        let steps = jumps(y);
        let m = g.len();
        let sa = Jet::var(AA, k[AA]).powf(-0.5);
        let sb = Jet::var(BB, k[BB]).powf(-0.5);
        let rho = Jet::var(AB, k[AB]).mul(&sa).mul(&sb);
        // Upper tails Φ̄(gₖ/s) as jets.
        let tail = |s: &Jet, gk: f64| {
            let x = s.scale(gk);
            let h = x.v;
            let p = gauss::pdf(h);
            x.unary(gauss::sf(h), -p, h * p)
        };
        let ta: Vec<Jet> = g.iter().map(|&gk| tail(&sa, gk)).collect();
        let tb: Vec<Jet> = g.iter().map(|&gk| tail(&sb, gk)).collect();
        // T_km = P(h_a > g_k, h_b > g_m) = T(g_k·s_a, g_m·s_b; ρ): its
        // derivatives in (s_a, s_b, ρ) are those in (h, k, ρ) times g_k, g_m,
        // so the double sum is taken first and composed with the jets once.
        let mut t = vec![0.0; m * m];
        let (mut sum_t, mut d1, mut d2) = (0.0, [0.0; 3], [[0.0; 3]; 3]);
        let mut add_term = |kk: usize, mm: usize, v: f64, g1: &[f64; 3], g2: &Mat3| {
            t[kk * m + mm] = v;
            let w = steps[kk] * steps[mm];
            let chain = [g[kk], g[mm], 1.0];
            sum_t += w * v;
            for i in 0..3 {
                d1[i] += w * g1[i] * chain[i];
                for j in 0..3 {
                    d2[i][j] += w * g2[i][j] * chain[i] * chain[j];
                }
            }
        };
        // With K_aa = K_bb, T(h, k; ρ) = T(k, h; ρ): the (m, k) term is the
        // (k, m) term with h and k swapped.
        let symmetric = sa.v == sb.v;
        let swap = [1, 0, 2];
        for kk in 0..m {
            for mm in 0..m {
                if symmetric && mm < kk {
                    continue;
                }
                let (v, g1, g2) = orthant(g[kk] * sa.v, g[mm] * sb.v, rho.v);
                add_term(kk, mm, v, &g1, &g2);
                if symmetric && mm > kk {
                    let g1s = swap.map(|i| g1[i]);
                    let g2s = swap.map(|i| swap.map(|j| g2[i][j]));
                    add_term(mm, kk, v, &g1s, &g2s);
                }
            }
        }
        let mut cross = Jet::constant(y[0] * y[0]);
        for kk in 0..m {
            cross = cross.add(&ta[kk].add(&tb[kk]).scale(y[0] * steps[kk]));
        }
        cross = cross.add(&Jet::compose3(sum_t, d1, &d2, [&sa, &sb, &rho]));
        // One-input moments E[ψ(h)] of a step function ψ with values `lv`.
        let single = |lv: &[f64], tails: &[Jet]| {
            let mut s = Jet::constant(lv[0]);
            for (d, tj) in jumps(lv).iter().zip(tails) {
                s = s.add(&tj.scale(*d));
            }
            s
        };
        let sq: Vec<f64> = y.iter().map(|v| v * v).collect();
        let ea = single(&sq, &ta);
        let eb = single(&sq, &tb);
        let fj = [ea, cross, eb].map(|e| e.scale(self.sw2).add(&Jet::constant(self.sb2)));
        // E[ψ(h_a) χ(h_b)] from the table T.
        let tav: Vec<f64> = ta.iter().map(|j| j.v).collect();
        let tbv: Vec<f64> = tb.iter().map(|j| j.v).collect();
        let pair = |psi: &[f64], chi: &[f64]| {
            let (al, be) = (jumps(psi), jumps(chi));
            let mut s = psi[0] * chi[0];
            for kk in 0..m {
                s += psi[0] * be[kk] * tbv[kk] + chi[0] * al[kk] * tav[kk];
                for mm in 0..m {
                    s += al[kk] * be[mm] * t[kk * m + mm];
                }
            }
            s
        };
        let pow = |p: i32| -> Vec<f64> { y.iter().map(|v| v.powi(p)).collect() };
        // E4[p] = E[φ_a^p φ_b^(4−p)].
        let e4: Vec<f64> = (0..=4).map(|p| pair(&pow(p), &pow(4 - p))).collect();
        let e2 = [ea.v, cross.v, eb.v];
        // Number of a's in each kernel entry.
        let na = [2usize, 1, 0];
        let mut noise = [[0.0; 3]; 3];
        for x in 0..3 {
            for z in 0..3 {
                noise[x][z] = self.sw2 * self.sw2 * (e4[na[x] + na[z]] - e2[x] * e2[z]);
            }
        }
        Local {
            f: [fj[0].v, fj[1].v, fj[2].v],
            j: [fj[0].g, fj[1].g, fj[2].g],
            h: [fj[0].h, fj[1].h, fj[2].h],
            noise,
        }
    }
}

/// The Wishart covariance of a measured kernel: n·Cov(Ĝ_x, Ĝ_y) for rows
/// i.i.d. N(0, K), W_{xy,zw} = K_xz K_yw + K_xw K_yz.
pub fn wishart(k: [f64; 3]) -> Mat3 {
    // Entry x ↔ index pair: aa = (0,0), ab = (0,1), bb = (1,1).
    let full = [[k[AA], k[AB]], [k[AB], k[BB]]];
    let pairs = [(0, 0), (0, 1), (1, 1)];
    let mut w = [[0.0; 3]; 3];
    for (x, &(i, j)) in pairs.iter().enumerate() {
        for (z, &(p, q)) in pairs.iter().enumerate() {
            w[x][z] = full[i][p] * full[j][q] + full[i][q] * full[j][p];
        }
    }
    w
}

/// a·b.
pub fn matmul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    r
}

/// aᵀ.
pub fn transpose(a: &Mat3) -> Mat3 {
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = a[j][i];
        }
    }
    r
}

/// a·v.
pub fn matvec(a: &Mat3, v: &[f64; 3]) -> [f64; 3] {
    [0, 1, 2].map(|i| (0..3).map(|k| a[i][k] * v[k]).sum())
}

/// Σᵢₖ a_ik b_ik.
pub fn contract(a: &Mat3, b: &Mat3) -> f64 {
    (0..3)
        .map(|i| (0..3).map(|k| a[i][k] * b[i][k]).sum::<f64>())
        .sum()
}
