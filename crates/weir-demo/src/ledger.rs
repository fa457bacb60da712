//! The demo business's ledger: stock, reservations, charges, refunds and
//! shipments, in the same database as weir's state. Every effect is keyed
//! by the saga step's idempotency key, so a step run twice (after a crash)
//! applies its effect once.

use std::collections::{BTreeMap, HashSet};

use sqlx::{AnyPool, Row};

use crate::orders::{Order, SKUS};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The ledger's tables, on SQLite or PostgreSQL through sqlx's `Any`
/// driver (`$n` parameters work on both).
#[derive(Debug, Clone)]
pub struct Ledger {
    pool: AnyPool,
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

    pub async fn connect(url: &str) -> Result<Self, Error> {
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
        Ok(Self { pool })
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
    /// Writes come first in each transaction, so that SQLite takes its write
    /// lock at once (waiting as long as it must) instead of failing to
    /// upgrade a read snapshot.
    pub async fn reserve(&self, key: &str, order: &Order) -> Result<bool, Error> {
        let mut tx = self.pool.begin().await?;
        let new = sqlx::query("INSERT INTO ledger_reservations (key, order_id, sku, qty, released) VALUES ($1, $2, $3, $4, 0) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(&order.order_id)
            .bind(&order.sku)
            .bind(i64::from(order.qty))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if new == 0 {
            // Reserved by an earlier attempt. End the transaction now: a
            // dropped one is rolled back only when its connection is next
            // used, and on SQLite it holds the write lock until then.
            tx.rollback().await?;
            return Ok(true);
        }
        let taken = sqlx::query("UPDATE ledger_stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1")
            .bind(i64::from(order.qty))
            .bind(&order.sku)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if taken == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Gives a reservation's stock back (once).
    pub async fn release(&self, reservation: &str) -> Result<(), Error> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE ledger_reservations SET released = 1 WHERE key = $1 AND released = 0 RETURNING sku, qty",
        )
        .bind(reservation)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = row {
            let (sku, qty): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
            sqlx::query("UPDATE ledger_stock SET qty = qty + $1 WHERE sku = $2")
                .bind(qty)
                .bind(sku)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a charge under the payment provider's idempotency key.
    pub async fn charge(&self, key: &str, order: &Order) -> Result<(), Error> {
        sqlx::query("INSERT INTO ledger_charges (key, order_id, tenant, amount) VALUES ($1, $2, $3, $4) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(&order.order_id)
            .bind(&order.tenant)
            .bind(order.amount_cents as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Refunds the charge made under `charge` (once; nothing if none).
    pub async fn refund(&self, charge: &str) -> Result<(), Error> {
        sqlx::query("INSERT INTO ledger_refunds (key, order_id, amount) SELECT key, order_id, amount FROM ledger_charges WHERE key = $1 ON CONFLICT (key) DO NOTHING")
            .bind(charge)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn ship(&self, key: &str, order: &Order) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO ledger_shipments (key, order_id, cancelled) VALUES ($1, $2, 0) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(&order.order_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn cancel_shipment(&self, shipment: &str) -> Result<(), Error> {
        sqlx::query("UPDATE ledger_shipments SET cancelled = 1 WHERE key = $1")
            .bind(shipment)
            .execute(&self.pool)
            .await?;
        Ok(())
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
