//! The HTML report of a run: the verdicts, the faults, and three hand-written SVG plots with
//! every fault period shaded: a timeline of operations (one lane per workload and member), the
//! latency of each operation, and the throughput per second by outcome.
//!
//! Hand-written SVG instead of `plotters`: three simple plot types, no font or image
//! dependencies to build on 2-core machines, and output that is plain text in the run folder.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::checker::{Validity, Verdict};
use crate::history::{pairs, Op, OpType};

/// A fault period, from the history's nemesis entries.
#[derive(Debug, Clone)]
pub struct Period {
    pub package: String,
    pub start_ns: u64,
    pub end_ns: u64,
    pub what: Value,
}

/// Fault periods: from each `start` completion to the matching `stop` completion (or the end).
pub fn periods(history: &[Op]) -> Vec<Period> {
    let end = history.last().map(|o| o.time).unwrap_or(0);
    let mut open: BTreeMap<(u64, String), usize> = BTreeMap::new();
    let mut out: Vec<Period> = Vec::new();
    for o in history.iter().filter(|o| o.workload == "nemesis" && o.kind == OpType::Info) {
        let step = o.value["step"].as_u64().unwrap_or(0);
        let package = o.value["package"].as_str().unwrap_or("").to_string();
        match o.f.as_str() {
            "start" => {
                open.insert((step, package.clone()), out.len());
                out.push(Period { package, start_ns: o.time, end_ns: end, what: o.value["done"].clone() });
            }
            "stop" => {
                if let Some(i) = open.remove(&(step, package)) {
                    out[i].end_ns = o.time;
                }
            }
            _ => {}
        }
    }
    out
}

fn color(package: &str) -> &'static str {
    match package {
        "partition" => "#e6194b",
        "kill" => "#3cb44b",
        "pause" => "#4363d8",
        "clock" => "#f58231",
        "member" => "#911eb4",
        "packet" => "#42d4f4",
        "disk" => "#f032e6",
        "power" => "#808000",
        _ => "#999999",
    }
}

fn outcome_color(t: OpType) -> &'static str {
    match t {
        OpType::Ok => "#2a9d2a",
        OpType::Fail => "#d62728",
        _ => "#ff9f1c",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 1100.0;
const LEFT: f64 = 110.0;
const RIGHT: f64 = 20.0;

struct Axis {
    t_max: f64,
}

impl Axis {
    fn x(&self, ns: u64) -> f64 {
        LEFT + (ns as f64 / 1e9) / self.t_max * (W - LEFT - RIGHT)
    }
}

/// Shaded fault periods and the time axis, for a plot `h` high.
fn background(svg: &mut String, ax: &Axis, periods: &[Period], top: f64, h: f64) {
    for p in periods {
        let (x0, x1) = (ax.x(p.start_ns), ax.x(p.end_ns));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{top}" width="{:.1}" height="{h}" fill="{}" fill-opacity="0.13"><title>{} {:.1}–{:.1} s</title></rect>"#,
            (x1 - x0).max(1.0),
            color(&p.package),
            esc(&p.package),
            p.start_ns as f64 / 1e9,
            p.end_ns as f64 / 1e9
        );
    }
    let step = nice_step(ax.t_max);
    let mut t = 0.0;
    while t <= ax.t_max + 1e-9 {
        let x = LEFT + t / ax.t_max * (W - LEFT - RIGHT);
        let _ = write!(
            svg,
            r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" font-size="10" text-anchor="middle">{t:.0}s</text>"##,
            top + h,
            top + h + 12.0
        );
        t += step;
    }
}

fn nice_step(span: f64) -> f64 {
    for s in [1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0] {
        if span / s <= 12.0 {
            return s;
        }
    }
    1200.0
}

/// Client operations with a latency (ok, fail, info-with-completion) of the data workloads.
fn client_ops(history: &[Op]) -> Vec<(String, String, u64, u64, OpType, String)> {
    pairs(history)
        .into_iter()
        .filter(|p| matches!(p.invoke.workload.as_str(), "register" | "set"))
        .filter_map(|p| {
            let d = p.done?;
            Some((
                p.invoke.workload.clone(),
                p.invoke.node.clone().unwrap_or_default(),
                p.invoke.time,
                d.time,
                d.kind,
                p.invoke.f.clone(),
            ))
        })
        .collect()
}

fn timeline(history: &[Op], periods: &[Period], ax: &Axis) -> String {
    let ops = client_ops(history);
    let mut lanes: Vec<String> = periods.iter().map(|p| format!("nemesis {}", p.package)).collect();
    lanes.sort();
    lanes.dedup();
    let mut client_lanes: Vec<String> = ops.iter().map(|o| format!("{} {}", o.0, o.1)).collect();
    client_lanes.sort();
    client_lanes.dedup();
    lanes.extend(client_lanes);
    let lane_h = 16.0;
    let top = 10.0;
    let h = lanes.len() as f64 * lane_h;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" font-family="sans-serif">"#,
        h + 40.0
    );
    background(&mut svg, ax, periods, top, h);
    let lane_of: BTreeMap<&String, usize> = lanes.iter().enumerate().map(|(i, l)| (l, i)).collect();
    for (i, l) in lanes.iter().enumerate() {
        let _ =
            write!(svg, r#"<text x="4" y="{:.1}" font-size="10">{}</text>"#, top + i as f64 * lane_h + 11.0, esc(l));
    }
    for p in periods {
        let lane = lane_of[&format!("nemesis {}", p.package)];
        let (x0, x1) = (ax.x(p.start_ns), ax.x(p.end_ns));
        let _ = write!(
            svg,
            r#"<rect x="{x0:.1}" y="{:.1}" width="{:.1}" height="{}" fill="{}"><title>{}</title></rect>"#,
            top + lane as f64 * lane_h + 2.0,
            (x1 - x0).max(1.0),
            lane_h - 4.0,
            color(&p.package),
            esc(&p.what.to_string())
        );
    }
    // At most 20 000 boxes: beyond that the page gets too heavy to be useful.
    let stride = (ops.len() / 20_000).max(1);
    for (wl, node, t0, t1, kind, f) in ops.iter().step_by(stride) {
        let lane = lane_of[&format!("{wl} {node}")];
        let _ = write!(
            svg,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{}" fill="{}" fill-opacity="0.6"><title>{f} {:?} {:.0} ms</title></rect>"#,
            ax.x(*t0),
            top + lane as f64 * lane_h + 3.0 + if f == "read" { 0.0 } else { 5.0 },
            (ax.x(*t1) - ax.x(*t0)).max(0.8),
            5.0,
            outcome_color(*kind),
            kind,
            (*t1 - *t0) as f64 / 1e6
        );
    }
    svg.push_str("</svg>");
    svg
}

fn latency(history: &[Op], periods: &[Period], ax: &Axis) -> String {
    let ops = client_ops(history);
    let (top, h) = (10.0, 300.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" font-family="sans-serif">"#,
        h + 40.0
    );
    background(&mut svg, ax, periods, top, h);
    // Log scale, 1 ms … 10 s.
    let y = |ms: f64| top + h - (ms.max(1.0).log10() / 4.0).min(1.0) * h;
    for (ms, label) in [(1.0, "1 ms"), (10.0, "10 ms"), (100.0, "100 ms"), (1000.0, "1 s"), (10000.0, "10 s")] {
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{0:.1}" x2="{1}" y2="{0:.1}" stroke="#eee"/><text x="{2}" y="{3:.1}" font-size="10" text-anchor="end">{label}</text>"##,
            y(ms),
            W - RIGHT,
            LEFT - 4.0,
            y(ms) + 3.0
        );
    }
    let stride = (ops.len() / 30_000).max(1);
    for (wl, _, t0, t1, kind, f) in ops.iter().step_by(stride) {
        let ms = (*t1 - *t0) as f64 / 1e6;
        let shape_r = if wl == "set" { 2.2 } else { 1.6 };
        let _ = write!(
            svg,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{shape_r}" fill="{}" fill-opacity="0.55"><title>{wl} {f} {ms:.0} ms</title></circle>"#,
            ax.x(*t1),
            y(ms),
            outcome_color(*kind)
        );
    }
    svg.push_str("</svg>");
    svg
}

fn throughput(history: &[Op], periods: &[Period], ax: &Axis) -> String {
    let ops = client_ops(history);
    let secs = ax.t_max.ceil() as usize + 1;
    let mut counts: BTreeMap<OpType, Vec<u32>> = BTreeMap::new();
    for kind in [OpType::Ok, OpType::Fail, OpType::Info] {
        counts.insert(kind, vec![0; secs]);
    }
    for (_, _, _, t1, kind, _) in &ops {
        let s = (*t1 / 1_000_000_000) as usize;
        if let Some(c) = counts.get_mut(kind).and_then(|v| v.get_mut(s)) {
            *c += 1;
        }
    }
    let max = counts.values().flat_map(|v| v.iter()).copied().max().unwrap_or(1).max(1) as f64;
    let (top, h) = (10.0, 200.0);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{}" font-family="sans-serif">"#,
        h + 40.0
    );
    background(&mut svg, ax, periods, top, h);
    let _ =
        write!(svg, r#"<text x="{}" y="{}" font-size="10" text-anchor="end">{max:.0}/s</text>"#, LEFT - 4.0, top + 8.0);
    let _ = write!(svg, r#"<text x="{}" y="{}" font-size="10" text-anchor="end">0</text>"#, LEFT - 4.0, top + h);
    for (kind, v) in &counts {
        let pts: Vec<String> = v
            .iter()
            .enumerate()
            .map(|(s, c)| {
                format!("{:.1},{:.1}", ax.x(s as u64 * 1_000_000_000 + 500_000_000), top + h - *c as f64 / max * h)
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            pts.join(" "),
            outcome_color(*kind)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Writes `report.html` for the run.
pub fn html(history: &[Op], verdicts: &[Verdict], meta: &Value) -> String {
    let periods = periods(history);
    let t_max = (history.last().map(|o| o.time).unwrap_or(1) as f64 / 1e9).max(1.0);
    let ax = Axis { t_max };
    let overall = Validity::all(verdicts.iter().map(|v| v.valid));
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>steward jepsen run</title><style>\
         body{{font-family:sans-serif;margin:20px;max-width:1150px}} td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}}\
         table{{border-collapse:collapse}} .valid{{color:#2a9d2a}} .invalid{{color:#d62728;font-weight:bold}} .unknown{{color:#ff9f1c}}\
         pre{{white-space:pre-wrap;font-size:11px;max-height:300px;overflow:auto;background:#f6f6f6;padding:6px}}</style></head><body>"
    );
    let (cls, word) = match overall {
        Validity::Valid => ("valid", "VALID"),
        Validity::Invalid => ("invalid", "INVALID"),
        Validity::Unknown => ("unknown", "UNKNOWN"),
    };
    let _ = write!(s, "<h1>steward jepsen run: <span class=\"{cls}\">{word}</span></h1>");
    let _ = write!(s, "<pre>{}</pre>", esc(&serde_json::to_string_pretty(meta).unwrap_or_default()));
    s.push_str("<h2>Verdicts</h2><table><tr><th>checker</th><th>valid</th><th>summary</th></tr>");
    for v in verdicts {
        let (cls, word) = match v.valid {
            Validity::Valid => ("valid", "yes"),
            Validity::Invalid => ("invalid", "NO"),
            Validity::Unknown => ("unknown", "unknown"),
        };
        let _ = write!(
            s,
            "<tr><td><a href=\"{0}.json\">{0}</a></td><td class=\"{cls}\">{word}</td><td>{1}</td></tr>",
            esc(&v.checker),
            esc(&v.summary)
        );
    }
    s.push_str("</table>");
    s.push_str("<h2>Faults</h2><p>");
    let mut seen: Vec<&str> = periods.iter().map(|p| p.package.as_str()).collect();
    seen.sort();
    seen.dedup();
    for p in seen {
        let _ = write!(
            s,
            "<span style=\"background:{};opacity:.7;padding:0 6px;margin-right:6px\">{}</span>",
            color(p),
            esc(p)
        );
    }
    s.push_str("</p><h3>Timeline</h3><p>One lane per workload and member; reads on top, writes below; green ok, red fail, orange indeterminate.</p>");
    s.push_str(&timeline(history, &periods, &ax));
    s.push_str("<h3>Latency</h3><p>Per operation, at its completion (log scale).</p>");
    s.push_str(&latency(history, &periods, &ax));
    s.push_str("<h3>Throughput</h3><p>Completions per second: ok, fail, indeterminate.</p>");
    s.push_str(&throughput(history, &periods, &ax));
    s.push_str("<h2>Fault log</h2><table><tr><th>start</th><th>end</th><th>fault</th><th>what happened</th></tr>");
    for p in &periods {
        let _ = write!(
            s,
            "<tr><td>{:.1} s</td><td>{:.1} s</td><td>{}</td><td><code>{}</code></td></tr>",
            p.start_ns as f64 / 1e9,
            p.end_ns as f64 / 1e9,
            esc(&p.package),
            esc(&p.what.to_string())
        );
    }
    s.push_str("</table><p>Files: <a href=\"history.jsonl\">history.jsonl</a>, <a href=\"results.json\">results.json</a>, <a href=\"nemesis-schedule.json\">nemesis-schedule.json</a>, member logs in <code>n*/steward.log</code>.</p></body></html>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use serde_json::json;

    #[test]
    fn a_report_shades_fault_periods_and_plots_operations() {
        let mut h = vec![
            Op::new(OpType::Info, Process::nemesis(), "nemesis", "start")
                .value(json!({ "step": 0, "package": "kill", "done": { "killed": ["n1"] } }))
                .at(1_000_000_000),
            Op::new(OpType::Invoke, Process::Client(1), "register", "write")
                .key("r0")
                .value(1)
                .node("n2")
                .at(1_500_000_000),
            Op::new(OpType::Ok, Process::Client(1), "register", "write")
                .key("r0")
                .value(1)
                .node("n2")
                .at(1_600_000_000),
            Op::new(OpType::Info, Process::nemesis(), "nemesis", "stop")
                .value(json!({ "step": 0, "package": "kill" }))
                .at(3_000_000_000),
        ];
        for (i, o) in h.iter_mut().enumerate() {
            o.index = i as u64;
        }
        let p = periods(&h);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].start_ns, p[0].end_ns), (1_000_000_000, 3_000_000_000));
        let v = Verdict::new("register", Validity::Valid, "ok", json!({}));
        let page = html(&h, &[v], &json!({ "seed": 1 }));
        assert!(page.contains("<svg") && page.contains("fill-opacity=\"0.13\"") && page.contains("register n2"));
    }
}
