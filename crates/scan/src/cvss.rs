//! CVSS base scores from vector strings, and the qualitative [`Severity`].
//!
//! v3.0 and v3.1 follow the FIRST specification's base equations and its
//! `Roundup` (Appendix A of v3.1, which computes v3.0's definition, "the
//! smallest one-decimal number not below the input", without floating
//! point artefacts; it is used for both). Temporal and environmental
//! metrics in a v3 vector are accepted and do not change the base score.
//!
//! v4.0 follows FIRST's reference calculator (`cvss_lookup.js` and the
//! macrovector interpolation of `app.js`): the vector's macrovector picks a
//! score from the lookup table, which is then lowered by the vector's
//! distance from the highest-severity vectors of that macrovector. Threat
//! and environmental metrics, when present, take part as they do there.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Qualitative severity: the CVSS rating bands, or what a record says in
/// words, or `Unknown` when it says nothing usable (never guessed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// The CVSS v3/v4 rating band of a score (0 is `None`, 0.1–3.9 `Low`,
    /// 4.0–6.9 `Medium`, 7.0–8.9 `High`, 9.0–10 `Critical`).
    pub fn from_score(score: f64) -> Severity {
        if !(0.0..=10.0).contains(&score) {
            Severity::Unknown
        } else if score == 0.0 {
            Severity::None
        } else if score < 4.0 {
            Severity::Low
        } else if score < 7.0 {
            Severity::Medium
        } else if score < 9.0 {
            Severity::High
        } else {
            Severity::Critical
        }
    }

    /// A severity written as a word (`LOW`, `moderate`, `High`, ...), as
    /// GitHub, Ubuntu and other databases put it in `database_specific` or
    /// `ecosystem_specific`. Anything else is `Unknown`.
    pub fn from_word(word: &str) -> Severity {
        match word.trim().to_ascii_lowercase().as_str() {
            "none" | "negligible" => Severity::None,
            "low" => Severity::Low,
            "moderate" | "medium" => Severity::Medium,
            "high" | "important" => Severity::High,
            "critical" => Severity::Critical,
            _ => Severity::Unknown,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Unknown => "unknown",
            Severity::None => "none",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        })
    }
}

/// A vector that is not a CVSS v3.x or v4.0 vector.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CVSS vector {vector:?}: {reason}")]
pub struct CvssError {
    pub vector: String,
    pub reason: String,
}

/// The base score of a `CVSS:3.0/…`, `CVSS:3.1/…` or `CVSS:4.0/…` vector.
pub fn score(vector: &str) -> Result<f64, CvssError> {
    let err = |reason: String| CvssError {
        vector: vector.to_owned(),
        reason,
    };
    let (version, metrics) = vector
        .split_once('/')
        .ok_or_else(|| err("no metrics".into()))?;
    let allowed: &[(&str, &[&str])] = match version {
        "CVSS:3.0" | "CVSS:3.1" => V3_METRICS,
        "CVSS:4.0" => V4_METRICS,
        other => return Err(err(format!("unsupported version {other:?}"))),
    };
    let mut m: HashMap<&str, &str> = HashMap::new();
    for field in metrics.split('/') {
        let (k, v) = field
            .split_once(':')
            .ok_or_else(|| err(format!("malformed field {field:?}")))?;
        let (name, values) = allowed
            .iter()
            .find(|(name, _)| *name == k)
            .ok_or_else(|| err(format!("unknown metric {k:?}")))?;
        if !values.contains(&v) {
            return Err(err(format!("invalid value {v:?} for {k}")));
        }
        if m.insert(name, v).is_some() {
            return Err(err(format!("metric {k} given twice")));
        }
    }
    let mandatory: &[&str] = if version == "CVSS:4.0" {
        &[
            "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
        ]
    } else {
        &["AV", "AC", "PR", "UI", "S", "C", "I", "A"]
    };
    if let Some(missing) = mandatory.iter().find(|k| !m.contains_key(*k)) {
        return Err(err(format!("missing base metric {missing}")));
    }
    Ok(if version == "CVSS:4.0" {
        v4(&m)
    } else {
        v3(&m)
    })
}

const V3_METRICS: &[(&str, &[&str])] = &[
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "R"]),
    ("S", &["U", "C"]),
    ("C", &["H", "L", "N"]),
    ("I", &["H", "L", "N"]),
    ("A", &["H", "L", "N"]),
    ("E", &["X", "H", "F", "P", "U"]),
    ("RL", &["X", "U", "W", "T", "O"]),
    ("RC", &["X", "C", "R", "U"]),
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "R"]),
    ("MS", &["X", "U", "C"]),
    ("MC", &["X", "H", "L", "N"]),
    ("MI", &["X", "H", "L", "N"]),
    ("MA", &["X", "H", "L", "N"]),
];

/// v3.1's `Roundup`: the smallest one-decimal number not below `x`,
/// computed on integers so that e.g. 4.000000000000001 gives 4.0.
fn roundup(x: f64) -> f64 {
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 {
        int_input as f64 / 100_000.0
    } else {
        (int_input / 10_000 + 1) as f64 / 10.0
    }
}

fn v3(m: &HashMap<&str, &str>) -> f64 {
    let changed = m["S"] == "C";
    let av = match m["AV"] {
        "N" => 0.85,
        "A" => 0.62,
        "L" => 0.55,
        _ => 0.2,
    };
    let ac = if m["AC"] == "L" { 0.77 } else { 0.44 };
    let pr = match (m["PR"], changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        (_, false) => 0.27,
        (_, true) => 0.5,
    };
    let ui = if m["UI"] == "N" { 0.85 } else { 0.62 };
    let cia = |k: &str| match m[k] {
        "H" => 0.56,
        "L" => 0.22,
        _ => 0.0,
    };
    let iss = 1.0 - (1.0 - cia("C")) * (1.0 - cia("I")) * (1.0 - cia("A"));
    let impact = if changed {
        7.52 * (iss - 0.029) - 3.25 * (iss - 0.02f64).powi(15)
    } else {
        6.42 * iss
    };
    let exploitability = 8.22 * av * ac * pr * ui;
    if impact <= 0.0 {
        0.0
    } else if changed {
        roundup((1.08 * (impact + exploitability)).min(10.0))
    } else {
        roundup((impact + exploitability).min(10.0))
    }
}

const V4_METRICS: &[(&str, &[&str])] = &[
    ("AV", &["N", "A", "L", "P"]),
    ("AC", &["L", "H"]),
    ("AT", &["N", "P"]),
    ("PR", &["N", "L", "H"]),
    ("UI", &["N", "P", "A"]),
    ("VC", &["H", "L", "N"]),
    ("VI", &["H", "L", "N"]),
    ("VA", &["H", "L", "N"]),
    ("SC", &["H", "L", "N"]),
    ("SI", &["H", "L", "N"]),
    ("SA", &["H", "L", "N"]),
    ("E", &["X", "A", "P", "U"]),
    ("CR", &["X", "H", "M", "L"]),
    ("IR", &["X", "H", "M", "L"]),
    ("AR", &["X", "H", "M", "L"]),
    ("MAV", &["X", "N", "A", "L", "P"]),
    ("MAC", &["X", "L", "H"]),
    ("MAT", &["X", "N", "P"]),
    ("MPR", &["X", "N", "L", "H"]),
    ("MUI", &["X", "N", "P", "A"]),
    ("MVC", &["X", "H", "L", "N"]),
    ("MVI", &["X", "H", "L", "N"]),
    ("MVA", &["X", "H", "L", "N"]),
    ("MSC", &["X", "H", "L", "N"]),
    ("MSI", &["X", "S", "H", "L", "N"]),
    ("MSA", &["X", "S", "H", "L", "N"]),
    ("S", &["X", "N", "P"]),
    ("AU", &["X", "N", "Y"]),
    ("R", &["X", "A", "U", "I"]),
    ("V", &["X", "D", "C"]),
    ("RE", &["X", "L", "M", "H"]),
    ("U", &["X", "Clear", "Green", "Amber", "Red"]),
];

/// The effective value of a v4 metric: its modified (environmental) value
/// when given, else the base value, with the reference's defaults for
/// threat (`E:X` is `A`) and requirements (`CR:X` is `H`).
fn v4_metric<'a>(m: &HashMap<&str, &'a str>, metric: &str) -> &'a str {
    let modified = [
        "AV", "AC", "AT", "PR", "UI", "VC", "VI", "VA", "SC", "SI", "SA",
    ]
    .iter()
    .position(|x| *x == metric)
    .and_then(|i| {
        m.get(
            [
                "MAV", "MAC", "MAT", "MPR", "MUI", "MVC", "MVI", "MVA", "MSC", "MSI", "MSA",
            ][i],
        )
    });
    match (modified, m.get(metric).copied().unwrap_or("X")) {
        (Some(v), _) if *v != "X" => v,
        (_, "X") if metric == "E" => "A",
        (_, "X") if matches!(metric, "CR" | "IR" | "AR") => "H",
        (_, v) => v,
    }
}

/// The severity-distance level of a metric value (0 is the most severe).
fn level(metric: &str, value: &str) -> f64 {
    match (metric, value) {
        ("AV", "N") | ("PR", "N") | ("UI", "N") | ("AC", "L") | ("AT", "N") => 0.0,
        ("AV", "A") | ("PR", "L") | ("UI", "P") | ("AC", "H") | ("AT", "P") => 0.1,
        ("AV", "L") | ("PR", "H") | ("UI", "A") => 0.2,
        ("AV", "P") => 0.3,
        ("VC" | "VI" | "VA", "H") => 0.0,
        ("VC" | "VI" | "VA", "L") => 0.1,
        ("VC" | "VI" | "VA", "N") => 0.2,
        ("SC" | "SI" | "SA", "S") => 0.0,
        ("SC" | "SI" | "SA", "H") => 0.1,
        ("SC" | "SI" | "SA", "L") => 0.2,
        ("SC" | "SI" | "SA", "N") => 0.3,
        ("CR" | "IR" | "AR", "H") => 0.0,
        ("CR" | "IR" | "AR", "M") => 0.1,
        ("CR" | "IR" | "AR", "L") => 0.2,
        _ => 0.0,
    }
}

fn lookup(macrovector: &[u8; 6]) -> f64 {
    let key = std::str::from_utf8(macrovector).unwrap_or("");
    MACROVECTOR_SCORES
        .binary_search_by(|(k, _)| k.cmp(&key))
        .map_or(f64::NAN, |i| MACROVECTOR_SCORES[i].1)
}

fn v4(m: &HashMap<&str, &str>) -> f64 {
    let g = |metric: &str| v4_metric(m, metric);
    let (av, pr, ui) = (g("AV"), g("PR"), g("UI"));
    let eq1 = if av == "N" && pr == "N" && ui == "N" {
        0
    } else if (av == "N" || pr == "N" || ui == "N") && av != "P" {
        1
    } else {
        2
    };
    let eq2 = if g("AC") == "L" && g("AT") == "N" {
        0
    } else {
        1
    };
    let (vc, vi, va) = (g("VC"), g("VI"), g("VA"));
    let eq3 = if vc == "H" && vi == "H" {
        0
    } else if vc == "H" || vi == "H" || va == "H" {
        1
    } else {
        2
    };
    let (sc, si, sa) = (g("SC"), g("SI"), g("SA"));
    let eq4 = if si == "S" || sa == "S" {
        0
    } else if sc == "H" || si == "H" || sa == "H" {
        1
    } else {
        2
    };
    let eq5 = match g("E") {
        "A" => 0,
        "P" => 1,
        _ => 2,
    };
    let eq6 = if (g("CR") == "H" && vc == "H")
        || (g("IR") == "H" && vi == "H")
        || (g("AR") == "H" && va == "H")
    {
        0
    } else {
        1
    };
    if [vc, vi, va, sc, si, sa].iter().all(|v| *v == "N") {
        return 0.0;
    }
    let eqs = [eq1, eq2, eq3, eq4, eq5, eq6];
    let mv = |deltas: [u8; 6]| {
        let mut s = [0u8; 6];
        for i in 0..6 {
            s[i] = b'0' + eqs[i] + deltas[i];
        }
        lookup(&s)
    };
    let value = mv([0; 6]);
    let lower_eq1 = mv([1, 0, 0, 0, 0, 0]);
    let lower_eq2 = mv([0, 1, 0, 0, 0, 0]);
    let lower_eq3eq6 = match (eq3, eq6) {
        (0 | 1, 1) => mv([0, 0, 1, 0, 0, 0]),
        (1, 0) => mv([0, 0, 0, 0, 0, 1]),
        // JavaScript's Math.max: NaN if either is.
        (0, 0) => {
            let (l, r) = (mv([0, 0, 0, 0, 0, 1]), mv([0, 0, 1, 0, 0, 0]));
            if l.is_nan() || r.is_nan() {
                f64::NAN
            } else {
                l.max(r)
            }
        }
        _ => mv([0, 0, 1, 0, 0, 1]),
    };
    let lower_eq4 = mv([0, 0, 0, 1, 0, 0]);
    let lower_eq5 = mv([0, 0, 0, 0, 1, 0]);

    // The first highest-severity vector of this macrovector that the
    // vector does not exceed in any metric, and the distances to it.
    let metrics = [
        "AV", "PR", "UI", "AC", "AT", "VC", "VI", "VA", "SC", "SI", "SA", "CR", "IR", "AR",
    ];
    let mut distance = [0.0f64; 14];
    'candidates: for e1 in EQ1_MAX[eq1 as usize] {
        for e2 in EQ2_MAX[eq2 as usize] {
            for e36 in eq3eq6_max(eq3, eq6) {
                for e4 in EQ4_MAX[eq4 as usize] {
                    let max = format!("{e1}{e2}{e36}{e4}");
                    for (i, metric) in metrics.iter().enumerate() {
                        let max_value = max
                            .split('/')
                            .find_map(|f| f.strip_prefix(metric).and_then(|v| v.strip_prefix(':')))
                            .unwrap_or("");
                        distance[i] = level(metric, g(metric)) - level(metric, max_value);
                    }
                    if distance.iter().all(|d| *d >= 0.0) {
                        break 'candidates;
                    }
                }
            }
        }
    }
    let d = |name: &str| distance[metrics.iter().position(|m| *m == name).unwrap_or(0)];
    let current = [
        d("AV") + d("PR") + d("UI"),
        d("AC") + d("AT"),
        d("VC") + d("VI") + d("VA") + d("CR") + d("IR") + d("AR"),
        d("SC") + d("SI") + d("SA"),
    ];
    let step = 0.1;
    let max_severity = [
        EQ1_SEVERITY[eq1 as usize] * step,
        EQ2_SEVERITY[eq2 as usize] * step,
        eq3eq6_severity(eq3, eq6) * step,
        EQ4_SEVERITY[eq4 as usize] * step,
    ];
    let available = [
        value - lower_eq1,
        value - lower_eq2,
        value - lower_eq3eq6,
        value - lower_eq4,
    ];
    let mut n_lower = 0;
    let mut normalized = 0.0;
    for i in 0..4 {
        if available[i] >= 0.0 {
            n_lower += 1;
            normalized += available[i] * (current[i] / max_severity[i]);
        }
    }
    // EQ5 counts as a lower macrovector but always contributes 0.
    if value - lower_eq5 >= 0.0 {
        n_lower += 1;
    }
    let mean = if n_lower == 0 {
        0.0
    } else {
        normalized / n_lower as f64
    };
    let score = (value - mean).clamp(0.0, 10.0);
    // The reference rounds half up, after adding 1e-6 against float error.
    ((score + 1e-6) * 10.0).round() / 10.0
}

// The tables of FIRST's CVSS v4.0 reference calculator
// (cvss_lookup.js and max_composed.js / max_severity.js).

/// Score of each macrovector (EQ1..EQ6 levels), sorted by key.
const MACROVECTOR_SCORES: [(&str, f64); 270] = [
    ("000000", 10.0),
    ("000001", 9.9),
    ("000010", 9.8),
    ("000011", 9.5),
    ("000020", 9.5),
    ("000021", 9.2),
    ("000100", 10.0),
    ("000101", 9.6),
    ("000110", 9.3),
    ("000111", 8.7),
    ("000120", 9.1),
    ("000121", 8.1),
    ("000200", 9.3),
    ("000201", 9.0),
    ("000210", 8.9),
    ("000211", 8.0),
    ("000220", 8.1),
    ("000221", 6.8),
    ("001000", 9.8),
    ("001001", 9.5),
    ("001010", 9.5),
    ("001011", 9.2),
    ("001020", 9.0),
    ("001021", 8.4),
    ("001100", 9.3),
    ("001101", 9.2),
    ("001110", 8.9),
    ("001111", 8.1),
    ("001120", 8.1),
    ("001121", 6.5),
    ("001200", 8.8),
    ("001201", 8.0),
    ("001210", 7.8),
    ("001211", 7.0),
    ("001220", 6.9),
    ("001221", 4.8),
    ("002001", 9.2),
    ("002011", 8.2),
    ("002021", 7.2),
    ("002101", 7.9),
    ("002111", 6.9),
    ("002121", 5.0),
    ("002201", 6.9),
    ("002211", 5.5),
    ("002221", 2.7),
    ("010000", 9.9),
    ("010001", 9.7),
    ("010010", 9.5),
    ("010011", 9.2),
    ("010020", 9.2),
    ("010021", 8.5),
    ("010100", 9.5),
    ("010101", 9.1),
    ("010110", 9.0),
    ("010111", 8.3),
    ("010120", 8.4),
    ("010121", 7.1),
    ("010200", 9.2),
    ("010201", 8.1),
    ("010210", 8.2),
    ("010211", 7.1),
    ("010220", 7.2),
    ("010221", 5.3),
    ("011000", 9.5),
    ("011001", 9.3),
    ("011010", 9.2),
    ("011011", 8.5),
    ("011020", 8.5),
    ("011021", 7.3),
    ("011100", 9.2),
    ("011101", 8.2),
    ("011110", 8.0),
    ("011111", 7.2),
    ("011120", 7.0),
    ("011121", 5.9),
    ("011200", 8.4),
    ("011201", 7.0),
    ("011210", 7.1),
    ("011211", 5.2),
    ("011220", 5.0),
    ("011221", 3.0),
    ("012001", 8.6),
    ("012011", 7.5),
    ("012021", 5.2),
    ("012101", 7.1),
    ("012111", 5.2),
    ("012121", 2.9),
    ("012201", 6.3),
    ("012211", 2.9),
    ("012221", 1.7),
    ("100000", 9.8),
    ("100001", 9.5),
    ("100010", 9.4),
    ("100011", 8.7),
    ("100020", 9.1),
    ("100021", 8.1),
    ("100100", 9.4),
    ("100101", 8.9),
    ("100110", 8.6),
    ("100111", 7.4),
    ("100120", 7.7),
    ("100121", 6.4),
    ("100200", 8.7),
    ("100201", 7.5),
    ("100210", 7.4),
    ("100211", 6.3),
    ("100220", 6.3),
    ("100221", 4.9),
    ("101000", 9.4),
    ("101001", 8.9),
    ("101010", 8.8),
    ("101011", 7.7),
    ("101020", 7.6),
    ("101021", 6.7),
    ("101100", 8.6),
    ("101101", 7.6),
    ("101110", 7.4),
    ("101111", 5.8),
    ("101120", 5.9),
    ("101121", 5.0),
    ("101200", 7.2),
    ("101201", 5.7),
    ("101210", 5.7),
    ("101211", 5.2),
    ("101220", 5.2),
    ("101221", 2.5),
    ("102001", 8.3),
    ("102011", 7.0),
    ("102021", 5.4),
    ("102101", 6.5),
    ("102111", 5.8),
    ("102121", 2.6),
    ("102201", 5.3),
    ("102211", 2.1),
    ("102221", 1.3),
    ("110000", 9.5),
    ("110001", 9.0),
    ("110010", 8.8),
    ("110011", 7.6),
    ("110020", 7.6),
    ("110021", 7.0),
    ("110100", 9.0),
    ("110101", 7.7),
    ("110110", 7.5),
    ("110111", 6.2),
    ("110120", 6.1),
    ("110121", 5.3),
    ("110200", 7.7),
    ("110201", 6.6),
    ("110210", 6.8),
    ("110211", 5.9),
    ("110220", 5.2),
    ("110221", 3.0),
    ("111000", 8.9),
    ("111001", 7.8),
    ("111010", 7.6),
    ("111011", 6.7),
    ("111020", 6.2),
    ("111021", 5.8),
    ("111100", 7.4),
    ("111101", 5.9),
    ("111110", 5.7),
    ("111111", 5.7),
    ("111120", 4.7),
    ("111121", 2.3),
    ("111200", 6.1),
    ("111201", 5.2),
    ("111210", 5.7),
    ("111211", 2.9),
    ("111220", 2.4),
    ("111221", 1.6),
    ("112001", 7.1),
    ("112011", 5.9),
    ("112021", 3.0),
    ("112101", 5.8),
    ("112111", 2.6),
    ("112121", 1.5),
    ("112201", 2.3),
    ("112211", 1.3),
    ("112221", 0.6),
    ("200000", 9.3),
    ("200001", 8.7),
    ("200010", 8.6),
    ("200011", 7.2),
    ("200020", 7.5),
    ("200021", 5.8),
    ("200100", 8.6),
    ("200101", 7.4),
    ("200110", 7.4),
    ("200111", 6.1),
    ("200120", 5.6),
    ("200121", 3.4),
    ("200200", 7.0),
    ("200201", 5.4),
    ("200210", 5.2),
    ("200211", 4.0),
    ("200220", 4.0),
    ("200221", 2.2),
    ("201000", 8.5),
    ("201001", 7.5),
    ("201010", 7.4),
    ("201011", 5.5),
    ("201020", 6.2),
    ("201021", 5.1),
    ("201100", 7.2),
    ("201101", 5.7),
    ("201110", 5.5),
    ("201111", 4.1),
    ("201120", 4.6),
    ("201121", 1.9),
    ("201200", 5.3),
    ("201201", 3.6),
    ("201210", 3.4),
    ("201211", 1.9),
    ("201220", 1.9),
    ("201221", 0.8),
    ("202001", 6.4),
    ("202011", 5.1),
    ("202021", 2.0),
    ("202101", 4.7),
    ("202111", 2.1),
    ("202121", 1.1),
    ("202201", 2.4),
    ("202211", 0.9),
    ("202221", 0.4),
    ("210000", 8.8),
    ("210001", 7.5),
    ("210010", 7.3),
    ("210011", 5.3),
    ("210020", 6.0),
    ("210021", 5.0),
    ("210100", 7.3),
    ("210101", 5.5),
    ("210110", 5.9),
    ("210111", 4.0),
    ("210120", 4.1),
    ("210121", 2.0),
    ("210200", 5.4),
    ("210201", 4.3),
    ("210210", 4.5),
    ("210211", 2.2),
    ("210220", 2.0),
    ("210221", 1.1),
    ("211000", 7.5),
    ("211001", 5.5),
    ("211010", 5.8),
    ("211011", 4.5),
    ("211020", 4.0),
    ("211021", 2.1),
    ("211100", 6.1),
    ("211101", 5.1),
    ("211110", 4.8),
    ("211111", 1.8),
    ("211120", 2.0),
    ("211121", 0.9),
    ("211200", 4.6),
    ("211201", 1.8),
    ("211210", 1.7),
    ("211211", 0.7),
    ("211220", 0.8),
    ("211221", 0.2),
    ("212001", 5.3),
    ("212011", 2.4),
    ("212021", 1.4),
    ("212101", 2.4),
    ("212111", 1.2),
    ("212121", 0.5),
    ("212201", 1.0),
    ("212211", 0.3),
    ("212221", 0.1),
];

/// The highest-severity vectors of each EQ level.
const EQ1_MAX: [&[&str]; 3] = [
    &["AV:N/PR:N/UI:N/"],
    &["AV:A/PR:N/UI:N/", "AV:N/PR:L/UI:N/", "AV:N/PR:N/UI:P/"],
    &["AV:P/PR:N/UI:N/", "AV:A/PR:L/UI:P/"],
];
const EQ2_MAX: [&[&str]; 2] = [&["AC:L/AT:N/"], &["AC:H/AT:N/", "AC:L/AT:P/"]];
const EQ4_MAX: [&[&str]; 3] = [
    &["SC:H/SI:S/SA:S/"],
    &["SC:H/SI:H/SA:H/"],
    &["SC:L/SI:L/SA:L/"],
];

fn eq3eq6_max(eq3: u8, eq6: u8) -> &'static [&'static str] {
    match (eq3, eq6) {
        (0, 0) => &["VC:H/VI:H/VA:H/CR:H/IR:H/AR:H/"],
        (0, _) => &[
            "VC:H/VI:H/VA:L/CR:M/IR:M/AR:H/",
            "VC:H/VI:H/VA:H/CR:M/IR:M/AR:M/",
        ],
        (1, 0) => &[
            "VC:L/VI:H/VA:H/CR:H/IR:H/AR:H/",
            "VC:H/VI:L/VA:H/CR:H/IR:H/AR:H/",
        ],
        (1, _) => &[
            "VC:L/VI:H/VA:L/CR:H/IR:M/AR:H/",
            "VC:L/VI:H/VA:H/CR:H/IR:M/AR:M/",
            "VC:H/VI:L/VA:H/CR:M/IR:H/AR:M/",
            "VC:H/VI:L/VA:L/CR:M/IR:H/AR:H/",
            "VC:L/VI:L/VA:H/CR:H/IR:H/AR:M/",
        ],
        _ => &["VC:L/VI:L/VA:L/CR:H/IR:H/AR:H/"],
    }
}

/// The depth (in 0.1 steps) of each EQ level.
const EQ1_SEVERITY: [f64; 3] = [1.0, 4.0, 5.0];
const EQ2_SEVERITY: [f64; 2] = [1.0, 2.0];
const EQ4_SEVERITY: [f64; 3] = [6.0, 5.0, 4.0];

fn eq3eq6_severity(eq3: u8, eq6: u8) -> f64 {
    match (eq3, eq6) {
        (0, 0) => 7.0,
        (0, _) => 6.0,
        (1, _) => 8.0,
        _ => 10.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v3_scores() {
        // Scores as FIRST's calculator gives them (cross-checked with the
        // `cvss` Python package), several vectors from the vulndata records.
        for (vector, want) in [
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 9.8),
            ("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N", 8.1),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.0/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N", 6.1),
            ("CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N", 5.9),
            ("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H", 7.8),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", 10.0),
            ("CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N", 1.6),
            ("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N", 0.0),
            ("CVSS:3.1/AV:A/AC:H/PR:L/UI:R/S:C/C:L/I:L/A:L/E:U/RL:O", 5.1),
        ] {
            assert_eq!(score(vector), Ok(want), "{vector}");
        }
    }

    #[test]
    fn roundup_avoids_float_artefacts() {
        assert_eq!(roundup(4.000_000_000_000_001), 4.0);
        assert_eq!(roundup(4.02), 4.1);
        assert_eq!(roundup(4.0), 4.0);
    }

    #[test]
    fn v4_scores() {
        // Scores as FIRST's reference calculator gives them (cross-checked
        // with the `cvss` Python package, a port of it).
        for (vector, want) in [
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                9.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:P/PR:L/UI:N/VC:L/VI:L/VA:L/SC:N/SI:N/SA:N",
                2.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:L/VA:N/SC:N/SI:N/SA:N/E:P",
                5.5,
            ),
            (
                "CVSS:4.0/AV:L/AC:L/AT:P/PR:L/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N",
                7.3,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:H/SI:H/SA:H",
                10.0,
            ),
            (
                "CVSS:4.0/AV:P/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N",
                1.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:N/VI:N/VA:N/SC:N/SI:N/SA:N",
                0.0,
            ),
            (
                "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N/MSI:S/CR:L",
                10.0,
            ),
        ] {
            assert_eq!(score(vector), Ok(want), "{vector}");
        }
    }

    #[test]
    fn refuses_bad_vectors() {
        for bad in [
            "",
            "AV:N/AC:L",
            "CVSS:2.0/AV:N/AC:L/Au:N/C:P/I:P/A:P",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:X",
            "CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:1",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:S/SA:N",
            "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N",
        ] {
            assert!(score(bad).is_err(), "{bad:?} scored");
        }
    }

    #[test]
    fn severity_bands_and_words() {
        assert_eq!(Severity::from_score(0.0), Severity::None);
        assert_eq!(Severity::from_score(0.1), Severity::Low);
        assert_eq!(Severity::from_score(3.9), Severity::Low);
        assert_eq!(Severity::from_score(4.0), Severity::Medium);
        assert_eq!(Severity::from_score(6.9), Severity::Medium);
        assert_eq!(Severity::from_score(7.0), Severity::High);
        assert_eq!(Severity::from_score(8.9), Severity::High);
        assert_eq!(Severity::from_score(9.0), Severity::Critical);
        assert_eq!(Severity::from_score(10.0), Severity::Critical);
        assert_eq!(Severity::from_score(11.0), Severity::Unknown);
        assert_eq!(Severity::from_word("MODERATE"), Severity::Medium);
        assert_eq!(Severity::from_word(" high "), Severity::High);
        assert_eq!(Severity::from_word("serious"), Severity::Unknown);
    }
}
