//! ITU-T G.107 (06/2015) E-model: the transmission rating R of a
//! narrowband connection and its MOS-CQ estimate (Annex B). Every input
//! but delay and packet loss keeps the Recommendation's default (§7.7,
//! Table 1), so with no delay and no loss R is 93.2. Pure arithmetic:
//! the caller brings the figures of a call.

/// What is known of one direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditions {
    /// Absolute one-way delay, mouth to ear, ms (Ta; the talker-echo
    /// delay T is taken as Ta and the round trip Tr as 2·Ta).
    pub delay_ms: f64,
    /// Packet loss, percent (Ppl).
    pub loss_percent: f64,
    /// Burst ratio (1: random loss).
    pub burst_ratio: f64,
    /// The codec's impairment.
    pub codec: Codec,
}

/// A codec's equipment impairment (ITU-T G.113 Appendix I).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Codec {
    /// Ie with no loss.
    pub ie: f64,
    /// Packet-loss robustness, Bpl.
    pub bpl: f64,
}

impl Codec {
    /// G.711 with packet-loss concealment (G.113 I.3: Ie 0, Bpl 25.1).
    pub const G711_PLC: Codec = Codec { ie: 0.0, bpl: 25.1 };
    /// G.729A with VAD (G.113 I.3: Ie 11, Bpl 19.0).
    pub const G729A: Codec = Codec {
        ie: 11.0,
        bpl: 19.0,
    };
    /// G.723.1 at 6.3 kbit/s with VAD (G.113 I.3: Ie 15, Bpl 16.1).
    pub const G723_1: Codec = Codec {
        ie: 15.0,
        bpl: 16.1,
    };

    /// The G.113 Appendix I figures for an SDP encoding name, and what
    /// they are: G.711 (PCMA, PCMU) with concealment, G.729 as G.729A with
    /// VAD, G.723.1 at 6.3 kbit/s. Any other codec (G.722, opus: wideband,
    /// which this narrowband model does not rate; or one G.113 gives no
    /// loss robustness for) is rated as G.711 with concealment, and said so.
    pub fn of_encoding(name: &str) -> (Codec, &'static str) {
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        if is("PCMA") || is("PCMU") {
            (Self::G711_PLC, "G.711 with PLC")
        } else if is("G729") || is("G729A") {
            (Self::G729A, "G.729A with VAD")
        } else if is("G723") {
            (Self::G723_1, "G.723.1 6.3 kbit/s")
        } else {
            (Self::G711_PLC, "not in G.113: rated as G.711 with PLC")
        }
    }
}

// Table 1 defaults.
const SLR: f64 = 8.0;
const RLR: f64 = 2.0;
const STMR: f64 = 15.0;
const LSTR: f64 = 18.0;
const DS: f64 = 3.0;
const TELR: f64 = 65.0;
const WEPL: f64 = 110.0;
const QDU: f64 = 1.0;
const NC: f64 = -70.0;
const NFOR: f64 = -64.0;
const PS: f64 = 35.0;
const PR: f64 = 35.0;
const A: f64 = 0.0;

fn lg(x: f64) -> f64 {
    x.log10()
}

/// Ro, Is (at talker-echo delay `t` ms) and the noise No (§7.2, §7.3).
struct Basic {
    ro: f64,
    is: f64,
    no: f64,
}

fn basic(t: f64) -> Basic {
    let olr = SLR + RLR;
    let nos = PS - SLR - DS - 100.0 + 0.004 * (PS - olr - DS - 14.0).powi(2);
    let pre = PR + 10.0 * lg(1.0 + 10f64.powf((10.0 - LSTR) / 10.0));
    let nor = RLR - 121.0 + pre + 0.008 * (pre - 35.0).powi(2);
    let nfo = NFOR + RLR;
    let no = 10.0
        * lg(10f64.powf(NC / 10.0)
            + 10f64.powf(nos / 10.0)
            + 10f64.powf(nor / 10.0)
            + 10f64.powf(nfo / 10.0));
    let ro = 15.0 - 1.5 * (SLR + no);
    // Is = Iolr + Ist + Iq.
    let xolr = olr + 0.2 * (64.0 + no - RLR);
    let iolr = 20.0 * ((1.0 + (xolr / 8.0).powi(8)).powf(1.0 / 8.0) - xolr / 8.0);
    let q = 37.0 - 15.0 * lg(QDU);
    let g = 1.07 + 0.258 * q + 0.0602 * q * q;
    let y = (ro - 100.0) / 15.0 + 46.0 / 8.4 - g / 9.0;
    let z = 46.0 / 30.0 - g / 40.0;
    let iq = 15.0 * lg(1.0 + 10f64.powf(y) + 10f64.powf(z));
    Basic {
        ro,
        is: iolr + ist(stmro(t)) + iq,
        no,
    }
}

/// STMRo at talker-echo delay `t` ms (§7.3, formula 7-13).
fn stmro(t: f64) -> f64 {
    -10.0 * lg(10f64.powf(-STMR / 10.0) + (-t / 4.0).exp() * 10f64.powf(-TELR / 10.0))
}

/// Ist (formula 7-12).
fn ist(stmro: f64) -> f64 {
    let part = |a: f64, b: f64, c: f64| (1.0 + ((stmro + a) / b).powf(c)).powf(1.0 / c);
    12.0 * part(-13.0, 6.0, 8.0) - 28.0 * part(1.0, 19.4, 35.0) - 13.0 * part(-3.0, 33.0, 13.0)
        + 29.0
}

/// Id = Idte + Idle + Idd (§7.4) at one-way delay `ta` ms.
fn delay_impairment(b: &Basic, ta: f64) -> f64 {
    let t = ta;
    let tr = 2.0 * ta;
    // Talker echo.
    let ist_t = ist(stmro(t));
    let mut terv =
        TELR - 40.0 * lg((1.0 + t / 10.0) / (1.0 + t / 150.0)) + 6.0 * (-0.3 * t * t).exp();
    if STMR < 9.0 {
        terv += ist_t / 2.0;
    }
    let re = 80.0 + 2.5 * (terv - 14.0);
    let roe = -1.5 * (b.no - RLR);
    let d = roe - re;
    let mut idte = (d / 2.0 + (d * d / 4.0 + 100.0).sqrt() - 1.0) * (1.0 - (-t).exp());
    if STMR > 20.0 {
        idte = (idte * idte + ist_t * ist_t).sqrt();
    }
    // Listener echo.
    let rle = 10.5 * (WEPL + 7.0) * (tr + 1.0).powf(-0.25);
    let e = b.ro - rle;
    let idle = e / 2.0 + (e * e / 4.0 + 169.0).sqrt();
    // Absolute delay.
    let idd = if ta <= 100.0 {
        0.0
    } else {
        let x = lg(ta / 100.0) / lg(2.0);
        25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
            + 2.0)
    };
    idte + idle + idd
}

/// Ie,eff (formula 7-29).
fn ie_eff(c: &Conditions) -> f64 {
    let ppl = c.loss_percent.clamp(0.0, 100.0);
    let burst = c.burst_ratio.max(1.0);
    c.codec.ie + (95.0 - c.codec.ie) * ppl / (ppl / burst + c.codec.bpl)
}

/// The rating R (formula 7-1), clamped to 0–100.
pub fn rating(c: &Conditions) -> f64 {
    let ta = if c.delay_ms.is_finite() {
        c.delay_ms.max(0.0)
    } else {
        0.0
    };
    let b = basic(ta);
    let r = b.ro - b.is - delay_impairment(&b, ta) - ie_eff(c) + A;
    if r.is_finite() {
        r.clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// MOS-CQ from R (Annex B, formula B-4): 1 to 4.5.
pub fn mos(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// The share of packets (percent) a de-jitter buffer of `buffer_ms`
/// beyond the mean transit discards as too late, when the interarrival
/// jitter (RFC 3550 §6.4.1) is `jitter_ms`: the transit taken as normal,
/// whose mean absolute difference between packets, 2σ/√π, is that jitter;
/// the packets later than the mean by more than the buffer are its upper
/// tail. With no jitter, none.
pub fn late_discard_percent(jitter_ms: f64, buffer_ms: f64) -> f64 {
    if jitter_ms <= 0.0 {
        return 0.0;
    }
    let sigma = jitter_ms * std::f64::consts::PI.sqrt() / 2.0;
    100.0 * 0.5 * erfc(buffer_ms.max(0.0) / (sigma * std::f64::consts::SQRT_2))
}

/// The complementary error function for x ≥ 0 (Abramowitz and Stegun
/// 7.1.26, error under 1.5e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(delay_ms: f64, loss_percent: f64, codec: Codec) -> f64 {
        rating(&Conditions {
            delay_ms,
            loss_percent,
            burst_ratio: 1.0,
            codec,
        })
    }

    #[test]
    fn the_defaults_rate_93_2_and_mos_4_41() {
        // §7.7: "default values ... R = 93.2".
        let r = at(0.0, 0.0, Codec::G711_PLC);
        assert!((r - 93.2).abs() < 0.05, "R = {r}");
        assert!((mos(r) - 4.41).abs() < 0.01, "MOS = {}", mos(r));
    }

    /// G.711 without concealment (G.113 I.3: Bpl 4.3).
    const G711: Codec = Codec { ie: 0.0, bpl: 4.3 };

    #[test]
    fn loss_costs_by_the_codecs_robustness() {
        // Ie,eff = 95·Ppl/(Ppl + Bpl): 2 % on G.711 with PLC is 7.01.
        let base = at(0.0, 0.0, Codec::G711_PLC);
        let lossy = at(0.0, 2.0, Codec::G711_PLC);
        assert!((base - lossy - 95.0 * 2.0 / 27.1).abs() < 1e-9);
        // Without concealment the same loss costs far more.
        assert!(at(0.0, 2.0, G711) < lossy - 15.0);
        // G.729A's own impairment.
        assert!((base - at(0.0, 0.0, Codec::G729A) - 11.0).abs() < 1e-9);
    }

    #[test]
    fn an_sdp_encoding_finds_its_g113_figures_or_says_it_is_rated_as_g711() {
        assert_eq!(Codec::of_encoding("pcma").0, Codec::G711_PLC);
        assert_eq!(Codec::of_encoding("G729").0, Codec::G729A);
        assert_eq!(Codec::of_encoding("G723").0, Codec::G723_1);
        let (c, why) = Codec::of_encoding("opus");
        assert_eq!(c, Codec::G711_PLC);
        assert!(why.contains("rated as G.711"), "{why}");
        assert!(at(0.0, 1.0, Codec::G729A) < at(0.0, 1.0, Codec::G711_PLC) - 11.0);
    }

    #[test]
    fn delay_lowers_r_and_most_past_the_knee() {
        let r = |d| at(d, 0.0, Codec::G711_PLC);
        assert!(r(50.0) <= r(0.0));
        assert!(r(150.0) < r(100.0));
        // Past 100 ms Idd grows: each 100 ms costs more than the one before.
        assert!(r(300.0) - r(400.0) > r(100.0) - r(200.0));
        // Carrier grade up to about 150 ms (G.114): R stays above 85 there.
        assert!(r(150.0) > 85.0, "{}", r(150.0));
    }

    #[test]
    fn mos_follows_annex_b_and_nonsense_stays_in_range() {
        assert_eq!(mos(-5.0), 1.0);
        assert_eq!(mos(120.0), 4.5);
        assert!((mos(80.0) - 4.02).abs() < 0.01);
        assert!((mos(50.0) - 2.58).abs() < 0.01);
        for d in [f64::NAN, f64::INFINITY, -3.0] {
            for loss in [f64::NAN, -1.0, 250.0] {
                let r = at(d, loss, Codec::G711_PLC);
                assert!((0.0..=100.0).contains(&r), "{d} {loss}: {r}");
            }
        }
        assert!(at(0.0, 100.0, G711) < 10.0);
    }

    #[test]
    fn a_buffer_discards_the_normal_tail_beyond_it() {
        // No jitter, nothing late; a buffer of 0 loses half.
        assert_eq!(late_discard_percent(0.0, 40.0), 0.0);
        assert!((late_discard_percent(10.0, 0.0) - 50.0).abs() < 1e-3);
        // Jitter 30 ms: σ 26.6 ms; 40 ms is 1.504σ: 6.62 % beyond.
        let p = late_discard_percent(30.0, 40.0);
        assert!((p - 6.62).abs() < 0.01, "{p}");
        // 5 ms of jitter in a 40 ms buffer: nothing worth counting.
        assert!(late_discard_percent(5.0, 40.0) < 1e-9);
        assert!((erfc(1.0) - 0.157_299_2).abs() < 2e-7);
    }
}
