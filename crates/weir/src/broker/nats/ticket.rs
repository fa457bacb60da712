//! [`Ticket`]: a JetStream message's receipt, and the keep-alive that
//! stops a long item's message from being redelivered while it runs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::Subject;
use async_nats::jetstream::AckKind;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::error::BoxError;
use crate::pipeline::{Fate, Receipt};
use crate::policy::retry::RetryPolicy;

/// The receipt of one JetStream message: settling it acknowledges the
/// message the way its [`Fate`] asks.
///
/// | fate | acknowledgement |
/// | --- | --- |
/// | `Delivered`, `Filtered`, `DeadLettered` | `+ACK` |
/// | `Skipped`, `Collected` | `+TERM`: never redelivered |
/// | `Released` | `-NAK` with the redelivery policy's delay for this delivery |
/// | `Abandoned` | `-NAK` without a delay: another worker may take it now |
///
/// While the ticket is held (the item is in the pipeline) its message gets
/// `+WPI` ("work in progress") every third of the consumer's `ack_wait`,
/// so a long item is not redelivered under a worker that is still on it.
pub struct Ticket {
    client: async_nats::Client,
    reply: Subject,
    delivered: u32,
    redelivery: Arc<RetryPolicy>,
    alive: Alive,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket").field("reply", &self.reply).field("delivered", &self.delivered).finish_non_exhaustive()
    }
}

impl Ticket {
    pub(crate) fn new(
        client: async_nats::Client,
        reply: Subject,
        delivered: u32,
        redelivery: Arc<RetryPolicy>,
        keep_alive: &Arc<KeepAlive>,
    ) -> Self {
        let alive = keep_alive.hold(reply.clone());
        Self { client, reply, delivered, redelivery, alive }
    }

    /// The acknowledgement for `fate`.
    fn acknowledgement(&self, fate: Fate) -> AckKind {
        match fate {
            Fate::Delivered | Fate::Filtered | Fate::DeadLettered => AckKind::Ack,
            Fate::Released => AckKind::Nak(Some(self.redelivery.delay_before(self.delivered))),
            Fate::Abandoned => AckKind::Nak(None),
            // Skipped, Collected, and any fate added later: do not redeliver.
            _ => AckKind::Term,
        }
    }
}

impl Receipt for Ticket {
    /// Whether the message has deliveries left (its delivery count is
    /// below the redelivery policy's `max_attempts`).
    fn may_redeliver(&self) -> bool {
        self.delivered < self.redelivery.max_attempts()
    }

    async fn settle(self, fate: Fate) -> Result<(), BoxError> {
        let ack = self.acknowledgement(fate);
        // No "in progress" may follow the acknowledgement: the server would
        // take it as the delivery still being worked on, and redeliver the
        // message once more after a nak.
        let _gate = self.alive.keep_alive.gate.lock().await;
        self.alive.release();
        self.client.publish(self.reply.clone(), ack.into()).await?;
        Ok(())
    }
}

/// The messages in flight of one source, told "work in progress" on a
/// timer by a task that stops when the last holder (the source, a ticket)
/// is gone.
pub(crate) struct KeepAlive {
    held: Mutex<HashMap<u64, Subject>>,
    /// Held while "in progress" messages go out, and while a message is
    /// acknowledged: one never overtakes the other.
    gate: tokio::sync::Mutex<()>,
    next: AtomicU64,
    _stop: DropGuard,
}

impl KeepAlive {
    /// Starts the timer task: every `every`, a `+WPI` for each message held.
    pub(crate) fn start(client: async_nats::Client, every: Duration) -> Arc<Self> {
        let stop = CancellationToken::new();
        let keep_alive = Arc::new(Self {
            held: Mutex::new(HashMap::new()),
            gate: tokio::sync::Mutex::new(()),
            next: AtomicU64::new(0),
            _stop: stop.clone().drop_guard(),
        });
        let weak = Arc::downgrade(&keep_alive);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await; // the first tick is now
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(keep_alive) = weak.upgrade() else { return };
                let _gate = keep_alive.gate.lock().await;
                let replies: Vec<Subject> = keep_alive.lock().values().cloned().collect();
                for reply in replies {
                    if let Err(error) = client.publish(reply, AckKind::Progress.into()).await {
                        tracing::debug!(error = %error, "could not tell JetStream a message is in progress");
                    }
                }
            }
        });
        keep_alive
    }

    fn hold(self: &Arc<Self>, reply: Subject) -> Alive {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, reply);
        Alive { keep_alive: Arc::clone(self), id }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subject>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A message's place in its source's keep-alive, given up on drop.
struct Alive {
    keep_alive: Arc<KeepAlive>,
    id: u64,
}

impl Alive {
    fn release(&self) {
        self.keep_alive.lock().remove(&self.id);
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.release();
    }
}
