//! The order saga: reserve inventory → charge payment → create shipment,
//! with release / refund / cancel as compensations. Payments go through a
//! per-tenant circuit breaker in front of a simulated provider that is
//! flaky, and down for one tenant in the demo.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weir::durable::saga::{SagaDefinition, StepContext, StepError};
use weir::policy::breaker::{Breaker, CircuitOpen};

use crate::ledger::Ledger;
use crate::orders::Order;

/// The simulated payment provider and its per-tenant breakers.
#[derive(Debug, Clone)]
pub struct Payments {
    /// Share of provider calls that fail (transiently).
    pub faults: f64,
    /// A tenant whose provider always fails.
    pub down_tenant: Option<String>,
    breakers: Arc<Mutex<HashMap<String, Breaker>>>,
}

impl Payments {
    pub fn new(faults: f64, down_tenant: Option<String>) -> Self {
        Self { faults, down_tenant, breakers: Arc::default() }
    }

    fn breaker(&self, tenant: &str) -> Breaker {
        let mut breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        breakers
            .entry(tenant.to_owned())
            .or_insert_with(|| {
                Breaker::builder()
                    .name(format!("payments:{tenant}"))
                    .consecutive_failures(5)
                    .open_for(Duration::from_secs(2))
                    .build()
                    .expect("valid breaker settings")
            })
            .clone()
    }

    /// How often each tenant's breaker opened.
    pub fn openings(&self) -> Vec<(String, u64)> {
        let breakers = self.breakers.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, u64)> =
            breakers.iter().map(|(t, b)| (t.clone(), b.metrics().openings)).filter(|(_, n)| *n > 0).collect();
        all.sort();
        all
    }

    async fn provider(&self, order: &Order) -> Result<(), weir::error::BoxError> {
        tokio::time::sleep(Duration::from_micros(200)).await; // the network
        if self.down_tenant.as_deref() == Some(order.tenant.as_str()) {
            return Err(format!("payment provider of {} is down", order.tenant).into());
        }
        if fastrand::f64() < self.faults {
            return Err("payment provider timed out".into());
        }
        Ok(())
    }
}

/// The saga's definition, bound to `ledger` and `payments`.
pub fn order_saga(ledger: Ledger, payments: Payments) -> SagaDefinition {
    let (l1, l2, l3, l4, l5, l6) =
        (ledger.clone(), ledger.clone(), ledger.clone(), ledger.clone(), ledger.clone(), ledger);
    SagaDefinition::builder("order")
        .step(
            "reserve",
            move |ctx: StepContext| {
                let ledger = l1.clone();
                async move {
                    let order: Order = ctx.input()?;
                    if ledger.reserve(&ctx.idempotency_key(), &order).await? {
                        Ok(())
                    } else {
                        Err(StepError::terminal(format!("out of stock: {}", order.sku)))
                    }
                }
            },
            move |ctx: StepContext| {
                let ledger = l2.clone();
                async move { Ok(ledger.release(&format!("{}/reserve", ctx.saga_id())).await?) }
            },
        )
        .step(
            "charge",
            move |ctx: StepContext| {
                let (ledger, payments) = (l3.clone(), payments.clone());
                async move {
                    let order: Order = ctx.input()?;
                    let breaker = payments.breaker(&order.tenant);
                    let paid: Result<(), weir::error::BoxError> = breaker.call(|| payments.provider(&order)).await;
                    match paid {
                        Ok(()) => Ok(ledger.charge(&ctx.idempotency_key(), &order).await?),
                        Err(e) if e.is::<CircuitOpen>() => {
                            Err(StepError::terminal(format!("payment unavailable: {e}")))
                        }
                        Err(e) => Err(StepError::retryable(e)),
                    }
                }
            },
            move |ctx: StepContext| {
                let ledger = l4.clone();
                async move { Ok(ledger.refund(&format!("{}/charge", ctx.saga_id())).await?) }
            },
        )
        .step(
            "ship",
            move |ctx: StepContext| {
                let ledger = l5.clone();
                async move {
                    let order: Order = ctx.input()?;
                    if order.address.starts_with("999 ") {
                        return Err(StepError::terminal("address not deliverable"));
                    }
                    Ok(ledger.ship(&ctx.idempotency_key(), &order).await?)
                }
            },
            move |ctx: StepContext| {
                let ledger = l6.clone();
                async move { Ok(ledger.cancel_shipment(&format!("{}/ship", ctx.saga_id())).await?) }
            },
        )
        .build()
        .expect("a valid definition")
}
