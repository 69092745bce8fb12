//! The two text formats `/metrics` speaks, and the choice between them from a request's `Accept` header.
//!
//! - Prometheus text 0.0.4 (`text/plain; version=0.0.4`): what every Prometheus and most other scrapers read; the
//!   default. A counter's `# HELP`/`# TYPE` name its samples' name, `..._total`.
//! - OpenMetrics 1.0 (`application/openmetrics-text; version=1.0.0`): a counter's metadata names the family
//!   without `_total` (its samples keep it), the exposition ends with `# EOF`, and `le` bounds are written as
//!   floats (`1.0`, not `1`), as the Go client writes them.
//!
//! Both are written here by hand: prometheus-client (which this endpoint used before) writes only OpenMetrics,
//! the `prometheus` crate only the 0.0.4 text, and the two differ in a handful of rules that are simpler to
//! state once than to translate one crate's output into the other's.

use std::fmt::Write as _;

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

const TEXT_TYPE: &str = "text/plain";
const OPENMETRICS_TYPE: &str = "application/openmetrics-text";

impl Format {
    /// The `Content-Type` of a response in this format.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to answer a request with the given `Accept` header (the values of every `Accept` line,
    /// joined by commas), or `None` when the header rules both out (HTTP 406).
    ///
    /// Each format gets the quality (`q`, default 1) of the most specific media range that matches it: its type
    /// (with a `version` we write: 0.0.4 or 1.0.0 for the text format, which reads the same for names that need
    /// no quoting; 1.0.0 or 0.0.1 for OpenMetrics), then `type/*`, then `*/*`. A range with a `version` we do
    /// not write does not match. The higher quality wins; on a tie the format the header names by its type
    /// wins over one that only a wildcard matches, and between two named ones the one listed first. No header,
    /// an empty one, or only `*/*`: text 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Option<Format> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(Format::Text);
        };
        let mut best = [Match::NONE; 2];
        for (position, range) in accept.split(',').enumerate() {
            let Some(range) = MediaRange::parse(range) else {
                continue;
            };
            for (slot, format) in [Format::Text, Format::OpenMetrics].into_iter().enumerate() {
                if let Some(specificity) = range.specificity_for(format) {
                    let candidate = Match {
                        specificity,
                        quality: range.quality,
                        position,
                    };
                    if candidate.specificity > best[slot].specificity {
                        best[slot] = candidate;
                    }
                }
            }
        }
        let [text, om] = best;
        let acceptable = |m: &Match| m.specificity > 0 && m.quality > 0;
        match (acceptable(&text), acceptable(&om)) {
            (false, false) => None,
            (true, false) => Some(Format::Text),
            (false, true) => Some(Format::OpenMetrics),
            (true, true) => Some(match om.quality.cmp(&text.quality) {
                std::cmp::Ordering::Greater => Format::OpenMetrics,
                std::cmp::Ordering::Less => Format::Text,
                std::cmp::Ordering::Equal => {
                    let named = |m: &Match| m.specificity >= Specificity::TYPE;
                    match (named(&om), named(&text)) {
                        (true, false) => Format::OpenMetrics,
                        (true, true) if om.position < text.position => Format::OpenMetrics,
                        _ => Format::Text,
                    }
                }
            }),
        }
    }
}

/// How specifically a media range matched a format (0: not at all), with its quality in thousandths and its
/// place in the header.
#[derive(Clone, Copy)]
struct Match {
    specificity: u8,
    quality: u16,
    position: usize,
}

impl Match {
    const NONE: Match = Match {
        specificity: 0,
        quality: 0,
        position: usize::MAX,
    };
}

struct Specificity;

impl Specificity {
    const ANY: u8 = 1;
    const SUBTYPE_ANY: u8 = 2;
    const TYPE: u8 = 3;
    const TYPE_AND_VERSION: u8 = 4;
}

/// One element of an `Accept` header: `type/subtype;param=value;q=0.5`.
struct MediaRange<'a> {
    media_type: &'a str,
    version: Option<&'a str>,
    /// Thousandths, 0..=1000.
    quality: u16,
}

impl<'a> MediaRange<'a> {
    fn parse(text: &'a str) -> Option<MediaRange<'a>> {
        let mut parts = text.split(';');
        let media_type = parts.next()?.trim();
        if !media_type.contains('/') {
            return None;
        }
        let mut range = MediaRange {
            media_type,
            version: None,
            quality: 1000,
        };
        for param in parts {
            let Some((key, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim().to_ascii_lowercase().as_str() {
                "q" => range.quality = parse_quality(value)?,
                "version" => range.version = Some(value),
                _ => {}
            }
        }
        Some(range)
    }

    fn specificity_for(&self, format: Format) -> Option<u8> {
        let (full, versions): (&str, &[&str]) = match format {
            Format::Text => (TEXT_TYPE, &["0.0.4", "1.0.0"]),
            Format::OpenMetrics => (OPENMETRICS_TYPE, &["1.0.0", "0.0.1"]),
        };
        let (main, _) = full.split_once('/')?;
        if self.media_type.eq_ignore_ascii_case(full) {
            return match self.version {
                None => Some(Specificity::TYPE),
                Some(v) if versions.contains(&v) => Some(Specificity::TYPE_AND_VERSION),
                Some(_) => None,
            };
        }
        let (range_main, range_sub) = self.media_type.split_once('/')?;
        match (range_main.trim(), range_sub.trim()) {
            ("*", "*") => Some(Specificity::ANY),
            (m, "*") if m.eq_ignore_ascii_case(main) => Some(Specificity::SUBTYPE_ANY),
            _ => None,
        }
    }
}

/// An HTTP quality value (`0`, `0.5`, `1.000`) in thousandths; `None` when it is not one (the range is ignored).
fn parse_quality(v: &str) -> Option<u16> {
    let (whole, fraction) = v.split_once('.').unwrap_or((v, ""));
    if fraction.len() > 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let thousandths = format!("{fraction:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(thousandths),
        "1" if thousandths == 0 => Some(1000),
        _ => None,
    }
}

/// The type of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A sample value, written exactly: integers as integers, floats in their shortest round-trip form.
pub trait SampleValue {
    fn write_to(&self, out: &mut String);
}

impl SampleValue for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl SampleValue for f64 {
    fn write_to(&self, out: &mut String) {
        write_float(out, *self, false);
    }
}

/// `NaN`, `+Inf`, `-Inf`, or the shortest decimal that reads back as `v` (never an exponent); with
/// `always_point`, an integral value gets `.0` (OpenMetrics' form of `le` bounds).
fn write_float(out: &mut String, v: f64, always_point: bool) {
    if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else if always_point && v.fract() == 0.0 {
        let _ = write!(out, "{v:.1}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// A histogram's state at one scrape: the count of observations at or below each bound (cumulative, one per
/// bound, in increasing order), the count of all observations, and their sum.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSample<'a> {
    pub bounds: &'a [f64],
    pub cumulative: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

/// Writes one exposition: families one after another, each with its `# HELP` and `# TYPE`.
pub struct Encoder {
    format: Format,
    out: String,
}

impl Encoder {
    pub fn new(format: Format) -> Encoder {
        Encoder {
            format,
            out: String::with_capacity(32 * 1024),
        }
    }

    /// Starts a family. `name` is the family's name without a suffix: `_total` is added to a counter's samples
    /// (and, in text 0.0.4, to its metadata); a histogram's samples get `_bucket`, `_sum` and `_count`.
    pub fn family<'e>(&'e mut self, name: &'e str, kind: Kind, help: &str) -> Family<'e> {
        let metadata_suffix = match (kind, self.format) {
            (Kind::Counter, Format::Text) => "_total",
            _ => "",
        };
        self.out.push_str("# HELP ");
        self.out.push_str(name);
        self.out.push_str(metadata_suffix);
        self.out.push(' ');
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '"' if self.format == Format::OpenMetrics => self.out.push_str("\\\""),
                c => self.out.push(c),
            }
        }
        self.out.push_str("\n# TYPE ");
        self.out.push_str(name);
        self.out.push_str(metadata_suffix);
        self.out.push(' ');
        self.out.push_str(kind.as_str());
        self.out.push('\n');
        Family {
            encoder: self,
            name,
            kind,
        }
    }

    /// The exposition (OpenMetrics: with its closing `# EOF`).
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// The samples of one family.
pub struct Family<'e> {
    encoder: &'e mut Encoder,
    name: &'e str,
    kind: Kind,
}

impl Family<'_> {
    /// One sample of a counter or gauge.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl SampleValue) -> &mut Self {
        debug_assert!(
            self.kind != Kind::Histogram,
            "{}: use histogram()",
            self.name
        );
        let suffix = if self.kind == Kind::Counter {
            "_total"
        } else {
            ""
        };
        self.line(suffix, labels, None, |out| value.write_to(out));
        self
    }

    /// The samples of one histogram: a bucket per bound and `+Inf`, `_sum`, `_count`.
    pub fn histogram(&mut self, labels: &[(&str, &str)], h: &HistogramSample<'_>) -> &mut Self {
        debug_assert!(
            self.kind == Kind::Histogram,
            "{}: not a histogram",
            self.name
        );
        let om = self.encoder.format == Format::OpenMetrics;
        let mut bound = String::new();
        for (le, n) in h.bounds.iter().zip(&h.cumulative) {
            bound.clear();
            write_float(&mut bound, *le, om);
            self.line("_bucket", labels, Some(&bound), |out| n.write_to(out));
        }
        self.line("_bucket", labels, Some("+Inf"), |out| h.count.write_to(out));
        self.line("_sum", labels, None, |out| h.sum.write_to(out));
        self.line("_count", labels, None, |out| h.count.write_to(out));
        self
    }

    fn line(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        le: Option<&str>,
        value: impl FnOnce(&mut String),
    ) {
        let out = &mut self.encoder.out;
        out.push_str(self.name);
        out.push_str(suffix);
        let le = le.map(|v| ("le", v));
        let mut all = labels.iter().copied().chain(le).peekable();
        if all.peek().is_some() {
            out.push('{');
            for (i, (key, v)) in all.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(key);
                out.push_str("=\"");
                for c in v.chars() {
                    match c {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        value(out);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: Option<Format> = Some(Format::OpenMetrics);
    const TEXT: Option<Format> = Some(Format::Text);

    #[test]
    fn negotiation_defaults_to_text_and_honours_quality() {
        for (accept, want) in [
            (None, TEXT),
            (Some(""), TEXT),
            (Some("*/*"), TEXT),
            (Some("text/*"), TEXT),
            (Some("text/plain"), TEXT),
            (Some("text/plain; version=0.0.4"), TEXT),
            (Some("application/*"), OM),
            (Some("application/openmetrics-text"), OM),
            (Some("application/openmetrics-text; version=1.0.0; charset=utf-8"), OM),
            (Some("application/openmetrics-text;version=0.0.1"), OM),
            // What Prometheus 2.x sends when it prefers OpenMetrics.
            (
                Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
                OM,
            ),
            // Prometheus 3 with its default scrape protocols (text 1.0.0 reads as 0.0.4 for these names).
            (
                Some("application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
                OM,
            ),
            (Some("application/openmetrics-text;q=0.5, text/plain;q=0.9"), TEXT),
            (Some("text/plain;q=0.2, application/openmetrics-text;q=0.3"), OM),
            // Equal quality: a named type beats a wildcard; between named ones the first listed.
            (Some("application/openmetrics-text, */*"), OM),
            (Some("*/*, application/openmetrics-text"), OM),
            (Some("application/openmetrics-text, text/plain"), OM),
            (Some("text/plain, application/openmetrics-text"), TEXT),
            // q=0 refuses; a version we do not write does not match.
            (Some("application/openmetrics-text;q=0, */*"), TEXT),
            (Some("text/plain;q=0, */*;q=0.1"), OM),
            (Some("application/openmetrics-text;version=2.0.0, text/plain;q=0.1"), TEXT),
            (Some("text/plain;version=9.9"), None),
            (Some("application/json"), None),
            (Some("*/*;q=0"), None),
            // A malformed quality voids its range only.
            (Some("application/openmetrics-text;q=2, text/plain;q=0.1"), TEXT),
            (Some("APPLICATION/OpenMetrics-Text ; Q=0.9 , text/plain ; q=0.8"), OM),
        ] {
            assert_eq!(Format::negotiate(accept), want, "Accept: {accept:?}");
        }
    }

    #[test]
    fn quality_values() {
        for (v, want) in [
            ("1", Some(1000)),
            ("1.000", Some(1000)),
            ("0", Some(0)),
            ("0.5", Some(500)),
            ("0.05", Some(50)),
            ("0.001", Some(1)),
            ("1.5", None),
            ("0.0001", None),
            ("2", None),
            ("-0.1", None),
            ("0.x", None),
        ] {
            assert_eq!(parse_quality(v), want, "q={v}");
        }
    }

    fn sample_exposition(format: Format) -> String {
        let mut e = Encoder::new(format);
        e.family(
            "demo_requests",
            Kind::Counter,
            "Requests \"served\", \\ by path\nsecond line",
        )
        .sample(&[("path", "/a\"b\\c\nd")], 3u64)
        .sample(&[], 4u64);
        e.family("demo_temperature_celsius", Kind::Gauge, "A gauge")
            .sample(&[], -2.5f64)
            .sample(&[("where", "inf")], f64::INFINITY);
        e.family("demo_latency_seconds", Kind::Histogram, "A histogram")
            .histogram(
                &[("command", "GetHealth")],
                &HistogramSample {
                    bounds: &[0.0001, 0.5, 1.0, 10.0],
                    cumulative: vec![1, 2, 2, 3],
                    count: 4,
                    sum: 12.25,
                },
            );
        e.finish()
    }

    #[test]
    fn text_format() {
        assert_eq!(
            sample_exposition(Format::Text),
            "# HELP demo_requests_total Requests \"served\", \\\\ by path\\nsecond line\n\
             # TYPE demo_requests_total counter\n\
             demo_requests_total{path=\"/a\\\"b\\\\c\\nd\"} 3\n\
             demo_requests_total 4\n\
             # HELP demo_temperature_celsius A gauge\n\
             # TYPE demo_temperature_celsius gauge\n\
             demo_temperature_celsius -2.5\n\
             demo_temperature_celsius{where=\"inf\"} +Inf\n\
             # HELP demo_latency_seconds A histogram\n\
             # TYPE demo_latency_seconds histogram\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"0.0001\"} 1\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"0.5\"} 2\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"1\"} 2\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"10\"} 3\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"+Inf\"} 4\n\
             demo_latency_seconds_sum{command=\"GetHealth\"} 12.25\n\
             demo_latency_seconds_count{command=\"GetHealth\"} 4\n"
        );
    }

    #[test]
    fn openmetrics_format() {
        assert_eq!(
            sample_exposition(Format::OpenMetrics),
            "# HELP demo_requests Requests \\\"served\\\", \\\\ by path\\nsecond line\n\
             # TYPE demo_requests counter\n\
             demo_requests_total{path=\"/a\\\"b\\\\c\\nd\"} 3\n\
             demo_requests_total 4\n\
             # HELP demo_temperature_celsius A gauge\n\
             # TYPE demo_temperature_celsius gauge\n\
             demo_temperature_celsius -2.5\n\
             demo_temperature_celsius{where=\"inf\"} +Inf\n\
             # HELP demo_latency_seconds A histogram\n\
             # TYPE demo_latency_seconds histogram\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"0.0001\"} 1\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"0.5\"} 2\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"1.0\"} 2\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"10.0\"} 3\n\
             demo_latency_seconds_bucket{command=\"GetHealth\",le=\"+Inf\"} 4\n\
             demo_latency_seconds_sum{command=\"GetHealth\"} 12.25\n\
             demo_latency_seconds_count{command=\"GetHealth\"} 4\n\
             # EOF\n"
        );
    }

    #[test]
    fn floats_are_exact_and_never_exponents() {
        for (v, want) in [
            (0.1 + 0.2, "0.30000000000000004"),
            (1e-7, "0.0000001"),
            (1e21, "1000000000000000000000"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
            (0.0, "0"),
        ] {
            let mut out = String::new();
            write_float(&mut out, v, false);
            assert_eq!(out, want);
        }
        let mut out = String::new();
        write_float(&mut out, 25.0, true);
        assert_eq!(out, "25.0");
    }
}
