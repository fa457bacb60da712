//! The demo business's ledger: stock, reservations, charges, refunds and
//! shipments, in the same database as weir's state. Every effect is keyed
//! by the saga step's idempotency key, so a step run twice (after a crash)
//! applies its effect once.
//!
//! Its writes are effects of the store's group commit
//! ([`Store::commit_effect`]), batched ([`writer`]): they share weir's one
//! writer connection and its `fsync`s instead of taking SQLite's write lock
//! in turns with it (through a pool of its own, with `synchronous =
//! NORMAL`, the demo made 449 orders/s against 1,994 raw single-row
//! commits/s, 84 % of the time in commits; one effect per step, 1,008
//! orders/s in the same session, 20,000 orders). Reads (the report's
//! checks) use a pool.

use std::collections::{BTreeMap, HashSet};

mod writer;

use sqlx::AnyPool;
use weir::durable::store::Store;

use self::writer::{Op, Writer};
use crate::orders::{Order, SKUS};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The ledger's tables, on SQLite or PostgreSQL through sqlx's `Any`
/// driver (`$n` parameters work on both).
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
    writer: Writer,
}

const SCHEMA: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS ledger_stock (sku TEXT PRIMARY KEY, qty BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_reservations (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, sku TEXT NOT NULL, qty BIGINT NOT NULL, released BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_charges (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, tenant TEXT NOT NULL, amount BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_refunds (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, amount BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ledger_shipments (key TEXT PRIMARY KEY, order_id TEXT NOT NULL, cancelled BIGINT NOT NULL)",
    // The pipeline's intake (see `crate::intake`): lines that repeated an
    // earlier line's order.
    "CREATE TABLE IF NOT EXISTS weir_cli_duplicates (input TEXT NOT NULL, line BIGINT NOT NULL, order_id TEXT NOT NULL, tenant TEXT NOT NULL, first_input TEXT NOT NULL, first_line BIGINT NOT NULL, PRIMARY KEY (input, line))",
];

/// What the ledger says about a run, checked against the sagas.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Invariants {
    /// Sum of charges not refunded.
    pub charged_cents: i64,
    /// Sum of the amounts of completed orders.
    pub completed_cents: i64,
    /// SKUs whose stock went below zero.
    pub negative_stock: Vec<String>,
    /// Compensated orders with a charge that was not refunded.
    pub unrefunded_compensated: Vec<String>,
    /// Orders charged more than once.
    pub charged_twice: Vec<String>,
    /// Sagas still in progress (another worker's, or an interrupted run's):
    /// while any is, charges and completed orders may differ by theirs.
    pub in_progress: u64,
}

impl Invariants {
    /// Whether the sums can be compared: no saga is between its charge and
    /// its end.
    pub fn settled(&self) -> bool {
        self.in_progress == 0
    }

    /// Whether the charges match the completed orders; `None` while not
    /// settled (a saga in progress may be between its charge and its end).
    pub fn sums_match(&self) -> Option<bool> {
        self.settled().then_some(self.charged_cents == self.completed_cents)
    }

    /// Whether an invariant that holds at every moment is broken, or the
    /// sums differ once settled.
    pub fn violated(&self) -> bool {
        self.sums_match() == Some(false)
            || !self.negative_stock.is_empty()
            || !self.unrefunded_compensated.is_empty()
            || !self.charged_twice.is_empty()
    }
}

impl Ledger {
    /// The connection pool (the intake's tables live beside the ledger's).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Connects to the ledger in the database of `store` (at `url`, for
    /// the pool that reads).
    pub async fn connect(url: &str, store: &Store) -> Result<Self, Error> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // The ledger stands for systems outside weir; a process
                        // crash loses nothing with NORMAL in WAL mode, and weir's
                        // own state stays at FULL.
                        for pragma in
                            ["PRAGMA journal_mode = WAL", "PRAGMA synchronous = NORMAL", "PRAGMA busy_timeout = 30000"]
                        {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        // Several workers may start at once: on PostgreSQL a transaction-wide
        // advisory lock makes them create the tables one after the other.
        let mut tx = pool.begin().await?;
        if !sqlite {
            sqlx::query("SELECT pg_advisory_xact_lock(74657)").execute(&mut *tx).await?;
        }
        for statement in SCHEMA {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(Self { pool, writer: Writer::start(store.clone()) })
    }

    /// Puts the demo's starting stock in place (once).
    pub async fn seed_stock(&self) -> Result<(), Error> {
        for (sku, qty) in SKUS {
            sqlx::query("INSERT INTO ledger_stock (sku, qty) VALUES ($1, $2) ON CONFLICT (sku) DO NOTHING")
                .bind(sku)
                .bind(qty)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Takes stock for an order; `Ok(false)` when there is not enough.
    pub async fn reserve(&self, key: &str, order: &Order) -> Result<bool, Error> {
        let (key, order_id, sku) = (key.to_owned(), order.order_id.clone(), order.sku.clone());
        self.writer.write(Op::Reserve { key, order_id, sku, qty: i64::from(order.qty) }).await
    }

    /// Gives a reservation's stock back (once).
    pub async fn release(&self, reservation: &str) -> Result<(), Error> {
        self.writer.write(Op::Release { key: reservation.to_owned() }).await.map(drop)
    }

    /// Records a charge under the payment provider's idempotency key.
    pub async fn charge(&self, key: &str, order: &Order) -> Result<(), Error> {
        let (key, order_id, tenant) = (key.to_owned(), order.order_id.clone(), order.tenant.clone());
        self.writer.write(Op::Charge { key, order_id, tenant, amount: order.amount_cents as i64 }).await.map(drop)
    }

    /// Refunds the charge made under `charge` (once; nothing if none).
    pub async fn refund(&self, charge: &str) -> Result<(), Error> {
        self.writer.write(Op::Refund { key: charge.to_owned() }).await.map(drop)
    }

    pub async fn ship(&self, key: &str, order: &Order) -> Result<(), Error> {
        self.writer.write(Op::Ship { key: key.to_owned(), order_id: order.order_id.clone() }).await.map(drop)
    }

    pub async fn cancel_shipment(&self, shipment: &str) -> Result<(), Error> {
        self.writer.write(Op::CancelShipment { key: shipment.to_owned() }).await.map(drop)
    }

    /// Checks the ledger against the orders' outcomes: `completed` maps
    /// completed order ids to amounts; `compensated` lists rolled-back ids.
    pub async fn check(
        &self,
        completed: &BTreeMap<String, i64>,
        compensated: &HashSet<String>,
        in_progress: u64,
    ) -> Result<Invariants, Error> {
        let charged_cents: i64 = sqlx::query_scalar("SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM ledger_charges WHERE key NOT IN (SELECT key FROM ledger_refunds)")
            .fetch_one(&self.pool)
            .await?;
        let negative_stock: Vec<String> =
            sqlx::query_scalar("SELECT sku FROM ledger_stock WHERE qty < 0").fetch_all(&self.pool).await?;
        let unrefunded: Vec<String> =
            sqlx::query_scalar("SELECT order_id FROM ledger_charges WHERE key NOT IN (SELECT key FROM ledger_refunds)")
                .fetch_all(&self.pool)
                .await?;
        let charged_twice: Vec<String> =
            sqlx::query_scalar("SELECT order_id FROM ledger_charges GROUP BY order_id HAVING COUNT(*) > 1")
                .fetch_all(&self.pool)
                .await?;
        Ok(Invariants {
            charged_cents,
            completed_cents: completed.values().sum(),
            negative_stock,
            unrefunded_compensated: unrefunded.into_iter().filter(|id| compensated.contains(id)).collect(),
            charged_twice,
            in_progress,
        })
    }
}
