//! Collected figures, the human-readable table and the JSON object.

use serde_json::{json, Map, Value};

/// How a figure compares with the figure it is divided by.
#[derive(Clone, Copy, PartialEq)]
pub enum Better {
    Higher,
    Lower,
}

/// One figure of one target.
#[derive(Clone)]
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    pub value: f64,
    pub better: Better,
    /// The figure divided by a machine limit: (ratio, name of the limit).
    pub vs_limit: Option<(f64, &'static str)>,
    /// The goal Berth is judged on, as (threshold, applies to the ratio?).
    pub target: Option<Goal>,
}

#[derive(Clone, Copy)]
pub struct Goal {
    pub threshold: f64,
    pub on_ratio: bool,
}

impl Figure {
    pub fn new(key: &'static str, label: &'static str, unit: &'static str, value: f64) -> Figure {
        let better = if unit == "ms" || unit == "MiB" {
            Better::Lower
        } else {
            Better::Higher
        };
        Figure {
            key,
            label,
            unit,
            value,
            better,
            vs_limit: None,
            target: None,
        }
    }

    pub fn vs(mut self, limit_value: f64, limit_name: &'static str) -> Figure {
        self.vs_limit = Some((self.value / limit_value, limit_name));
        self
    }

    pub fn goal(mut self, threshold: f64, on_ratio: bool) -> Figure {
        self.target = Some(Goal {
            threshold,
            on_ratio,
        });
        self
    }

    fn goal_text(&self) -> Option<(String, bool)> {
        let g = self.target?;
        let v = if g.on_ratio {
            self.vs_limit?.0
        } else {
            self.value
        };
        let (op, ok) = match self.better {
            Better::Higher => (">=", v >= g.threshold),
            Better::Lower => ("<=", v <= g.threshold),
        };
        let what = if g.on_ratio {
            format!("{op}{}x", g.threshold)
        } else if g.threshold >= 1000.0 {
            format!("{op}{}", fmt_num(g.threshold))
        } else {
            format!("{op}{}", g.threshold)
        };
        Some((what, ok))
    }
}

pub struct TargetReport {
    pub name: String,
    pub url: String,
    pub repo: String,
    pub figures: Vec<Figure>,
    pub notes: Vec<String>,
}

pub struct Limits {
    pub sha256_mb_s: Option<f64>,
    pub null_get_mb_s: Option<f64>,
    /// Small (512-byte) GETs per second from the do-nothing server.
    pub null_ops_s: Option<f64>,
    pub null_get_bytes: u64,
}

pub struct Run {
    pub run_id: String,
    pub client_runtime: String,
    pub params: Value,
    pub limits: Limits,
    pub targets: Vec<TargetReport>,
}

pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        // Thousands separators for readability.
        let s = format!("{:.0}", v);
        let (sign, digits) = s.split_at(if s.starts_with('-') { 1 } else { 0 });
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        format!("{sign}{out}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

impl Run {
    pub fn table(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "berth-bench {}  (client runtime: {})\n\n",
            self.run_id, self.client_runtime
        ));
        o.push_str("Machine limits (measured in this run; SHA-256 best of 3, GET best of 5)\n");
        if let Some(v) = self.limits.sha256_mb_s {
            o.push_str(&format!(
                "  {:<44} {:>12} MB/s\n",
                "SHA-256, one core (sha2 crate)",
                fmt_num(v)
            ));
        }
        if let Some(v) = self.limits.null_get_mb_s {
            o.push_str(&format!(
                "  {:<44} {:>12} MB/s\n",
                format!(
                    "GET {} from a do-nothing HTTP server",
                    fmt_size(self.limits.null_get_bytes)
                ),
                fmt_num(v)
            ));
        }
        if let Some(v) = self.limits.null_ops_s {
            o.push_str(&format!(
                "  {:<44} {:>12} ops/s\n",
                "512 B GETs from it, manifest GET concurrency",
                fmt_num(v)
            ));
        }
        o.push('\n');
        for t in &self.targets {
            o.push_str(&format!(
                "{} = {}  (repository {})\n",
                t.name, t.url, t.repo
            ));
        }
        o.push('\n');

        let main = &self.targets[0];
        let cmp = self.targets.get(1);
        let mut header = format!(
            "{:<36} {:>12} {:<5} {:>8} {:>12}",
            "figure", main.name, "", "x limit", "goal"
        );
        if let Some(c) = cmp {
            header.push_str(&format!(
                " {:>12} {:>8} {:>14}",
                c.name,
                "x limit",
                format!("{}/{}", main.name, c.name)
            ));
        }
        o.push_str(&header);
        o.push('\n');
        o.push_str(&"-".repeat(header.len()));
        o.push('\n');
        for f in &main.figures {
            let ratio = f
                .vs_limit
                .map(|(r, _)| format!("{r:.3}"))
                .unwrap_or_default();
            let goal = f
                .goal_text()
                .map(|(g, ok)| format!("{g} {}", if ok { "ok" } else { "MISS" }))
                .unwrap_or_default();
            let mut line = format!(
                "{:<36} {:>12} {:<5} {:>8} {:>12}",
                f.label,
                fmt_num(f.value),
                f.unit,
                ratio,
                goal
            );
            if let Some(c) = cmp {
                if let Some(cf) = c.figures.iter().find(|x| x.key == f.key) {
                    let cr = cf
                        .vs_limit
                        .map(|(r, _)| format!("{r:.3}"))
                        .unwrap_or_default();
                    line.push_str(&format!(
                        " {:>12} {:>8} {:>14}",
                        fmt_num(cf.value),
                        cr,
                        format!("{:.3}", f.value / cf.value)
                    ));
                }
            }
            o.push_str(line.trim_end());
            o.push('\n');
        }
        o.push_str(
            "\nx limit: push MB/s / SHA-256 MB/s, pull MB/s / do-nothing GET MB/s,\n\
             manifest GET/HEAD ops/s / do-nothing 512 B GET ops/s.\n\
             goal: what Berth is judged on (ok/MISS is for the first target only).\n",
        );
        if cmp.is_some() {
            o.push_str(
                "last column: first target's figure / second target's figure \
                 (for ms and MiB, lower is better).\n",
            );
        }
        for t in &self.targets {
            for n in &t.notes {
                o.push_str(&format!("note ({}): {n}\n", t.name));
            }
        }
        o
    }

    pub fn json(&self) -> Value {
        let mut targets = Map::new();
        for t in &self.targets {
            let mut figs = Map::new();
            for f in &t.figures {
                figs.insert(f.key.into(), num(f.value));
                if let Some((r, lim)) = f.vs_limit {
                    figs.insert(format!("{}_vs_{}", f.key, lim), num(r));
                }
            }
            targets.insert(
                t.name.clone(),
                json!({
                    "url": t.url,
                    "repository": t.repo,
                    "figures": figs,
                    "notes": t.notes,
                }),
            );
        }
        let mut out = json!({
            "run": self.run_id,
            "client_runtime": self.client_runtime,
            "params": self.params,
            "limits": {
                "sha256_one_core_mb_s": self.limits.sha256_mb_s.map(num),
                "null_get_mb_s": self.limits.null_get_mb_s.map(num),
                "null_small_get_ops_s": self.limits.null_ops_s.map(num),
                "null_get_bytes": self.limits.null_get_bytes,
            },
            "targets": targets,
        });
        if self.targets.len() > 1 {
            let (a, b) = (&self.targets[0], &self.targets[1]);
            let mut ratios = Map::new();
            for f in &a.figures {
                if let Some(g) = b.figures.iter().find(|x| x.key == f.key) {
                    ratios.insert(f.key.into(), num(f.value / g.value));
                }
            }
            out["ratio_main_over_compare"] = Value::Object(ratios);
        }
        out
    }
}

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

pub fn fmt_size(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes % (1 << 30) == 0 {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes % (1 << 20) == 0 {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes % (1 << 10) == 0 {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} B")
    }
}
