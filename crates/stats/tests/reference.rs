//! Every public function against `fixtures/reference.json`, written by
//! `fixtures/make_reference.py` from scipy, statsmodels and independent numpy formulas.
//!
//! Tolerances:
//! - closed forms (Wilson, z test, Wald, mSPRT, confidence sequence, SRM statistic, Holm, IPS,
//!   SNIPS, DR): relative 1e-9 (absolute 1e-15 near 0);
//! - through special functions (normal and Student t tails and quantiles, chi-squared tail,
//!   Welch df): relative 1e-9 as well, since those are computed to ~1e-13 here;
//! - Beta-Bernoulli integrals (P(beats), expected losses, P(best)): absolute 1e-9 on
//!   probabilities and relative 1e-7 on losses, stricter than the 1e-6 the API promises.

use serde_json::Value;
use whisperer_stats::*;

fn reference() -> Value {
    let text = include_str!("fixtures/reference.json");
    serde_json::from_str(text).expect("reference.json parses")
}

fn cases<'a>(r: &'a Value, section: &str) -> &'a Vec<Value> {
    let list = r[section].as_array().unwrap_or_else(|| panic!("section {section} missing"));
    assert!(!list.is_empty(), "section {section} is empty");
    list
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

const CLOSED: f64 = 1e-9;

#[track_caller]
fn close_rel(got: f64, want: f64, rel: f64, what: &str) {
    let tol = rel * want.abs().max(1e-6);
    assert!(
        (got - want).abs() <= tol,
        "{what}: got {got:e}, want {want:e}, |diff| {:e} > {tol:e}",
        (got - want).abs()
    );
}

#[track_caller]
fn close_abs(got: f64, want: f64, abs: f64, what: &str) {
    assert!(
        (got - want).abs() <= abs,
        "{what}: got {got:e}, want {want:e}, |diff| {:e} > {abs:e}",
        (got - want).abs()
    );
}

/// Relative tolerance for values that may be tiny (p-values): relative to the value itself,
/// with an absolute floor far below anything that matters.
#[track_caller]
fn close_p(got: f64, want: f64, what: &str) {
    let tol = CLOSED * want.abs() + 1e-300;
    assert!((got - want).abs() <= tol, "{what}: got {got:e}, want {want:e}");
}

#[test]
fn wilson_matches_statsmodels() {
    let r = reference();
    for c in cases(&r, "wilson") {
        let i = wilson_interval(u(c, "x"), u(c, "n"), f(c, "confidence")).unwrap();
        close_rel(i.lower, f(c, "lower"), CLOSED, &format!("lower {c}"));
        close_rel(i.upper, f(c, "upper"), CLOSED, &format!("upper {c}"));
    }
}

#[test]
fn two_proportion_matches_statsmodels() {
    let r = reference();
    for c in cases(&r, "two_proportion") {
        let t = two_proportion_test(u(c, "x_t"), u(c, "n_t"), u(c, "x_c"), u(c, "n_c"), f(c, "confidence"))
            .unwrap();
        close_rel(t.rate_treat, f(c, "rate_treat"), CLOSED, "rate_treat");
        close_rel(t.rate_control, f(c, "rate_control"), CLOSED, "rate_control");
        close_rel(t.diff, f(c, "diff"), CLOSED, "diff");
        close_rel(t.diff_ci.lower, f(c, "lower"), CLOSED, &format!("lower {c}"));
        close_rel(t.diff_ci.upper, f(c, "upper"), CLOSED, &format!("upper {c}"));
        close_rel(t.z, f(c, "z"), CLOSED, &format!("z {c}"));
        close_p(t.p_value, f(c, "p_value"), &format!("p {c}"));
    }
}

fn summary(v: &Value, streamed: bool) -> Summary {
    if streamed {
        let data: Vec<f64> = v["data"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let s = Summary::from_slice(&data).unwrap();
        assert_eq!(s.n(), u(v, "n"));
        close_rel(s.mean().unwrap(), f(v, "mean"), CLOSED, "streamed mean");
        close_rel(s.variance().unwrap(), f(v, "variance"), CLOSED, "streamed variance");
        s
    } else {
        Summary::from_moments(u(v, "n"), f(v, "mean"), f(v, "variance")).unwrap()
    }
}

#[test]
fn welch_matches_scipy() {
    let r = reference();
    let mut raw = 0;
    for c in cases(&r, "welch") {
        let streamed = c["treat"].get("data").is_some();
        raw += usize::from(streamed);
        // Small cases go through the streaming accumulator, large ones through their moments.
        let t = welch_test(
            &summary(&c["treat"], streamed),
            &summary(&c["control"], streamed),
            f(c, "confidence"),
        )
        .unwrap();
        let what = format!("n_t={} n_c={} conf={}", c["treat"]["n"], c["control"]["n"], c["confidence"]);
        close_rel(t.diff, f(c, "diff"), CLOSED, &format!("diff {what}"));
        close_rel(t.t, f(c, "t"), CLOSED, &format!("t {what}"));
        close_rel(t.df, f(c, "df"), CLOSED, &format!("df {what}"));
        close_p(t.p_value, f(c, "p_value"), &format!("p {what}"));
        close_rel(t.diff_ci.lower, f(c, "lower"), CLOSED, &format!("lower {what}"));
        close_rel(t.diff_ci.upper, f(c, "upper"), CLOSED, &format!("upper {what}"));
    }
    assert!(raw > 0);
}

#[test]
fn msprt_matches_formula() {
    let r = reference();
    for c in cases(&r, "msprt") {
        let got =
            msprt_log_likelihood_ratio(u(c, "x_t"), u(c, "n_t"), u(c, "x_c"), u(c, "n_c"), f(c, "tau2"))
                .unwrap();
        close_rel(got, f(c, "log_lr"), CLOSED, &format!("{c}"));
    }
    for c in cases(&r, "always_valid") {
        let mut test = AlwaysValid::new(f(c, "tau2")).unwrap();
        let looks = c["looks"].as_array().unwrap();
        let ps = c["p_values"].as_array().unwrap();
        for (look, p) in looks.iter().zip(ps) {
            let k: Vec<u64> = look.as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
            let got = test.update(k[0], k[1], k[2], k[3]).unwrap();
            close_p(got, p.as_f64().unwrap(), &format!("look {look}"));
        }
        assert_eq!(test.looks(), looks.len() as u64);
    }
}

#[test]
fn confidence_sequence_matches_formula() {
    let r = reference();
    for c in cases(&r, "confidence_sequence") {
        let i = confidence_sequence(
            u(c, "x_t"),
            u(c, "n_t"),
            u(c, "x_c"),
            u(c, "n_c"),
            f(c, "alpha"),
            f(c, "tau2"),
        )
        .unwrap();
        close_rel(i.lower, f(c, "lower"), CLOSED, &format!("lower {c}"));
        close_rel(i.upper, f(c, "upper"), CLOSED, &format!("upper {c}"));
    }
}

fn prior(c: &Value) -> BetaPrior {
    let p = c["prior"].as_array().unwrap();
    BetaPrior::new(p[0].as_f64().unwrap(), p[1].as_f64().unwrap()).unwrap()
}

const PROB_ABS: f64 = 1e-9;
const LOSS_REL: f64 = 1e-7;

#[test]
fn bayes_matches_scipy_quad() {
    let r = reference();
    for c in cases(&r, "bayes") {
        let pr = prior(c);
        let (xt, nt, xc, nc) = (u(c, "x_t"), u(c, "n_t"), u(c, "x_c"), u(c, "n_c"));
        let p = pr.prob_beats_control(xt, nt, xc, nc).unwrap();
        close_abs(p, f(c, "prob_beats"), PROB_ABS, &format!("prob_beats {c}"));
        let loss = pr.expected_loss(xt, nt, xc, nc).unwrap();
        let lt = f(c, "loss_treatment");
        let lc = f(c, "loss_control");
        close_abs(loss.treatment, lt, LOSS_REL * lt.abs() + 1e-15, &format!("loss_treatment {c}"));
        close_abs(loss.control, lc, LOSS_REL * lc.abs() + 1e-15, &format!("loss_control {c}"));
        if pr == BetaPrior::default() {
            assert_eq!(prob_beats_control(xt, nt, xc, nc).unwrap(), p);
            assert_eq!(expected_loss(xt, nt, xc, nc).unwrap(), loss);
        }
    }
}

#[test]
fn prob_best_matches_scipy_quad() {
    let r = reference();
    for c in cases(&r, "prob_best") {
        let arms: Vec<(u64, u64)> = c["arms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a[0].as_u64().unwrap(), a[1].as_u64().unwrap()))
            .collect();
        let got = prior(c).prob_best(&arms).unwrap();
        let want = c["probs"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            close_abs(*g, w.as_f64().unwrap(), PROB_ABS, &format!("{arms:?}"));
        }
        close_abs(got.iter().sum(), 1.0, PROB_ABS, "sum");
    }
}

#[test]
fn srm_matches_scipy() {
    let r = reference();
    for c in cases(&r, "srm") {
        let obs: Vec<u64> = c["observed"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
        let w: Vec<f64> = c["weights"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let s = sample_ratio_mismatch(&obs, &w).unwrap();
        assert_eq!(s.df, u(c, "df"));
        close_rel(s.chi2, f(c, "chi2"), CLOSED, &format!("chi2 {c}"));
        close_p(s.p_value, f(c, "p_value"), &format!("p {c}"));
    }
}

#[test]
fn holm_matches_statsmodels() {
    let r = reference();
    for c in cases(&r, "holm") {
        let p: Vec<f64> = c["p_values"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        let want = c["adjusted"].as_array().unwrap();
        let got = holm_adjust(&p).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            close_rel(*g, w.as_f64().unwrap(), CLOSED, &format!("{p:?}"));
        }
    }
}

#[test]
fn ope_matches_formulas() {
    let r = reference();
    for c in cases(&r, "ope") {
        let log: Vec<Logged> = c["rounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let v: Vec<f64> = row.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
                Logged { propensity: v[0], reward: v[1], target_prob: v[2], q_logged: v[3], q_target: v[4] }
            })
            .collect();
        let conf = f(c, "confidence");
        type Estimator = fn(&[Logged], f64) -> Result<Estimate>;
        let estimators: [(&str, Estimator); 3] = [("ips", ips), ("snips", snips), ("dr", doubly_robust)];
        for (name, estimator) in estimators {
            let e = estimator(&log, conf).unwrap();
            let want = &c[name];
            let what = format!("{name} n={}", log.len());
            assert_eq!(e.n, u(want, "n"));
            close_rel(e.value, f(want, "value"), CLOSED, &format!("value {what}"));
            close_rel(e.std_error, f(want, "std_error"), CLOSED, &format!("se {what}"));
            close_rel(e.ci.lower, f(want, "lower"), CLOSED, &format!("lower {what}"));
            close_rel(e.ci.upper, f(want, "upper"), CLOSED, &format!("upper {what}"));
            close_rel(e.effective_sample_size, f(want, "ess"), CLOSED, &format!("ess {what}"));
        }
    }
}
