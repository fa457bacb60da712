//! Orders: the input format, its parser, and the demo's generator.

use serde::{Deserialize, Serialize};

/// One order, as a JSON object on one line of the input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub order_id: String,
    pub tenant: String,
    pub sku: String,
    pub qty: u32,
    pub amount_cents: u64,
    pub address: String,
}

/// A line of input with where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    /// 1-based line number.
    pub number: u64,
    /// Byte offset just after the line.
    pub end: u64,
    pub text: String,
    /// The line's bytes were not UTF-8 (`text` is then a lossy copy).
    #[serde(default)]
    pub invalid_utf8: bool,
    /// The line was longer than the reader's limit: `text` holds only its
    /// start, and this its full length and the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_limit: Option<OverLimit>,
    /// The input file it came from (its canonical path); empty where
    /// unknown (lines parked before inputs were named).
    #[serde(default)]
    pub input: String,
}

/// How long a line over the limit was, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverLimit {
    /// The line's length in bytes, its newline included.
    pub bytes: u64,
    /// The limit it passed (`--max-line-bytes`).
    pub limit: u64,
}

impl Line {
    /// A line as read from the input: `raw` ends at byte offset `end`.
    pub fn from_raw(raw: crate::input::RawLine, number: u64, end: u64, limit: usize) -> Self {
        let (text, invalid_utf8) = match String::from_utf8(raw.bytes) {
            Ok(text) => (text, false),
            // Over the limit, the cut may fall inside a character: that
            // alone does not make the line invalid.
            Err(e) if raw.over_limit => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), true),
        };
        let over_limit = raw.over_limit.then_some(OverLimit { bytes: raw.len, limit: limit as u64 });
        // Only a start of a long line is kept in dead letters.
        let text = if over_limit.is_some() { text.chars().take(200).collect() } else { text };
        Line { number, end, text, invalid_utf8, over_limit, input: String::new() }
    }
}

/// Why a line is not a valid order.
#[derive(Debug, thiserror::Error)]
pub enum BadLine {
    #[error("line {line}: not a JSON order: {reason}")]
    Malformed { line: u64, reason: String },
    #[error("line {line}: invalid order {order_id}: {reason}")]
    Invalid { line: u64, order_id: String, reason: String },
}

/// Parses and validates one line.
///
/// # Errors
/// [`BadLine`] naming the line and the reason.
///
/// # Panics
/// On the demo's poison SKU `PANIC`, on purpose: the pipeline recovers and
/// dead-letters the line (seed task 13).
pub fn parse(line: &Line) -> Result<Order, BadLine> {
    if let Some(over) = line.over_limit {
        let reason = format!(
            "line of {} bytes is over the limit of {} bytes; raise --max-line-bytes to read it",
            over.bytes, over.limit
        );
        return Err(BadLine::Malformed { line: line.number, reason });
    }
    if line.invalid_utf8 {
        return Err(BadLine::Malformed { line: line.number, reason: "not valid UTF-8".into() });
    }
    let order: Order = serde_json::from_str(&line.text)
        .map_err(|e| BadLine::Malformed { line: line.number, reason: e.to_string() })?;
    let invalid = |reason: &str| BadLine::Invalid {
        line: line.number,
        order_id: order.order_id.clone(),
        reason: reason.to_owned(),
    };
    if order.order_id.is_empty() || order.tenant.is_empty() {
        return Err(invalid("order_id and tenant are required"));
    }
    if order.qty == 0 {
        return Err(invalid("qty must be at least 1"));
    }
    if order.amount_cents == 0 {
        return Err(invalid("amount_cents must be positive"));
    }
    assert!(order.sku != "PANIC", "unhandled SKU {} in order {}", order.sku, order.order_id);
    Ok(order)
}

/// Settings of the demo's generated input.
#[derive(Debug, Clone, Copy)]
pub struct Generate {
    pub orders: u64,
    pub tenants: u32,
    pub faults: f64,
    pub seed: u64,
}

/// SKUs of the demo, with the stock each starts with.
pub const SKUS: [(&str, i64); 5] =
    [("mug", 400_000), ("tee", 400_000), ("cap", 400_000), ("bag", 400_000), ("limited-print", 40)];

/// The demo's tenant whose payment provider is down.
pub fn down_tenant(tenants: u32) -> String {
    tenant_name(tenants.saturating_sub(1))
}

pub fn tenant_name(i: u32) -> String {
    format!("merchant-{i:02}")
}

/// Generates the demo's input: realistic orders, with malformed lines,
/// invalid and poison orders among them (about `faults` of the lines).
pub fn generate(g: Generate) -> String {
    let mut rng = fastrand::Rng::with_seed(g.seed);
    let mut out = String::with_capacity(g.orders as usize * 140);
    for n in 0..g.orders {
        let tenant = tenant_name(rng.u32(0..g.tenants.max(1)));
        let (sku, _) = SKUS[rng.usize(0..SKUS.len())];
        let order = Order {
            order_id: format!("ord-{}-{n:07}", g.seed),
            tenant,
            sku: sku.to_owned(),
            qty: rng.u32(1..4),
            amount_cents: rng.u64(500..20_000),
            address: format!("{} Main St", rng.u32(1..999)),
        };
        let line = if rng.f64() < g.faults / 3.0 {
            match rng.u8(0..4) {
                0 => format!("{{\"order_id\": \"ord-{}-{n:07}\", \"tenant\": ", g.seed),
                1 => serde_json::to_string(&Order { qty: 0, ..order }).expect("serializes"),
                2 => serde_json::to_string(&Order { sku: "PANIC".into(), ..order }).expect("serializes"),
                _ => "not json at all".to_owned(),
            }
        } else {
            serde_json::to_string(&order).expect("serializes")
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}
