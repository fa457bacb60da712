use std::sync::atomic::{AtomicI64, Ordering};

/// Caps retries at a share of calls, so a sick dependency sees a bounded
/// extra load instead of a retry storm (as SRE practice and tower's budget
/// recommend).
///
/// Every first attempt deposits `ratio` of a retry; every retry withdraws
/// one. A reserve of `min_retries` lets a quiet client retry at all. Over
/// any run, retries ≤ `min_retries + ratio × calls`.
///
/// Share one budget (in an `Arc`) between every policy that calls the same
/// dependency.
///
/// # Examples
/// ```
/// use weir::policy::retry::RetryBudget;
/// let budget = RetryBudget::new(0.1, 0);
/// for _ in 0..10 { budget.deposit(); }
/// assert!(budget.try_withdraw());
/// assert!(!budget.try_withdraw(), "10 calls at 10% buy one retry");
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    /// In thousandths of a retry.
    balance: AtomicI64,
    per_call: i64,
    cap: i64,
}

const ONE_RETRY: i64 = 1000;

impl RetryBudget {
    /// A budget allowing `ratio` retries per call (0.1 = 10 %) on top of
    /// `min_retries`. The balance never exceeds `min_retries` plus what
    /// 1000 calls deposit, so a long quiet spell cannot bank a storm.
    pub fn new(ratio: f64, min_retries: u32) -> Self {
        let per_call = (ratio.clamp(0.0, 1000.0) * ONE_RETRY as f64) as i64;
        let reserve = i64::from(min_retries) * ONE_RETRY;
        Self { balance: AtomicI64::new(reserve), per_call, cap: reserve + per_call * 1000 }
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        let _ =
            self.balance.fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| Some((b + self.per_call).min(self.cap)));
    }

    /// Takes one retry from the budget; `false` if it is spent.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| (b >= ONE_RETRY).then_some(b - ONE_RETRY))
            .is_ok()
    }
}
