//! The leases an invocation holds ([`crate::store::lease`]): a write takes its turn right
//! before its objects become visible, and keeps it until its unit of work ends (an event, a
//! notification, a map batch, a job's finish, an SQS message), after anything that could
//! remove what it made visible (a table commit's clean-up, the removals of its mode). An SQS
//! message whose table commit waits for the batch's end keeps its turn until then.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::Function;
use crate::Error;
use crate::input::event::WriteMode;
use crate::input::target::Target;
use crate::store::budget::{turn_give_up, write_budget};
use crate::store::lease::turn::expiry;
use crate::store::lease::{Claim, Holder, Turn};
use crate::store::s3::Output;

/// How long giving back an invocation's leases may take: within its clean-up reserve.
const RELEASE_WITHIN: Duration = Duration::from_secs(2);

/// The turns of the invocation in progress.
pub(super) struct Turns {
    /// This process's mark in every lease it writes.
    sandbox: String,
    /// The invocation in progress (its request id).
    by: Mutex<String>,
    held: tokio::sync::Mutex<Vec<Turn>>,
}

impl std::fmt::Debug for Turns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turns")
            .field("sandbox", &self.sandbox)
            .finish_non_exhaustive()
    }
}

impl Default for Turns {
    fn default() -> Turns {
        Turns {
            sandbox: uuid::Uuid::now_v7().to_string(),
            by: Mutex::default(),
            held: tokio::sync::Mutex::default(),
        }
    }
}

impl Turns {
    /// Starts an invocation's turns: `request_id` holds what it takes.
    pub(super) fn start(&self, request_id: &str) {
        *self.by.lock().unwrap() = request_id.to_owned();
    }

    /// The invocation in progress as the holder of leases for `works`.
    pub(super) fn holder(
        &self,
        works: &[&str],
        deadline: Option<SystemTime>,
        now: SystemTime,
    ) -> Holder {
        Holder {
            by: self.by.lock().unwrap().clone(),
            sandbox: self.sandbox.clone(),
            expires_ms: expiry(deadline, now),
            works: works.iter().map(|w| (*w).to_owned()).collect(),
        }
    }

    /// How many turns are held: a mark for [`Turns::release_since`].
    pub(super) async fn mark(&self) -> usize {
        self.held.lock().await.len()
    }

    /// Gives back the turns taken after `mark`, within [`RELEASE_WITHIN`] (a lease not given
    /// back stands until its time is past).
    pub(super) async fn release_since(&self, mark: usize) {
        let mut held = self.held.lock().await;
        let at = mark.min(held.len());
        let turns = held.split_off(at);
        if turns.is_empty() {
            return;
        }
        let giving = futures::future::join_all(turns.into_iter().map(|mut turn| async move {
            turn.release().await;
        }));
        if tokio::time::timeout(RELEASE_WITHIN, giving).await.is_err() {
            tracing::warn!(
                "leases could not be given back in time: they stand until their time is past"
            );
        }
    }
}

/// What a write of `targets` claims: the keys of each work it writes (`works`, the ids they
/// hold), and what `mode` replaces (each partition folder written, or the whole folder).
pub(super) fn claims(
    targets: &[Target],
    works: &[&str],
    mode: WriteMode,
    outputs: &[&Output],
) -> Vec<Claim> {
    let mut claims = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        let (bucket, folder) = (&target.prefix.bucket, &target.prefix.key_prefix);
        claims.extend(works.iter().map(|id| Claim::work(bucket, folder, id)));
        match mode {
            WriteMode::Append => {}
            WriteMode::Overwrite => claims.push(Claim::replace(bucket, folder, "")),
            WriteMode::OverwritePartitions => claims.extend(
                outputs
                    .iter()
                    .filter(|o| o.target == index)
                    .map(|o| Claim::replace(bucket, folder, &o.partition)),
            ),
        }
    }
    claims
}

impl Function {
    /// Takes the leases of `claims` (those this invocation holds already aside) for the
    /// objects of `works`, held until the unit of work ends. Returns `(bucket, folder, id)`
    /// of the works whose killed writers' leases it took over: their uploads are to be
    /// aborted.
    ///
    /// # Errors
    /// `WriteConflict` when another writer held one until the time left to wait ran out;
    /// `S3WriteFailed` when S3 fails a lease's request.
    pub(super) async fn take_turn(
        &self,
        mut claims: Vec<Claim>,
        works: &[&str],
        deadline: Option<SystemTime>,
    ) -> Result<Vec<(String, String, String)>, Error> {
        let turns = &self.turns;
        let mut held = turns.held.lock().await;
        claims.retain(|c| !held.iter().any(|turn| turn.claims().any(|h| h == c)));
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let now = SystemTime::now();
        let holder = turns.holder(works, deadline, now);
        // A lease request that hangs must not outlast the invocation either.
        let taking = Turn::take(&self.store, claims, holder, turn_give_up(deadline));
        let turn = match write_budget(deadline, now)? {
            None => taking.await?,
            Some(budget) => tokio::time::timeout(budget, taking).await.map_err(|_| {
                Error::S3WriteFailed(
                    "the time left before the invocation deadline ran out while the write's leases were being taken".into(),
                )
            })??,
        };
        let abandoned = turn.abandoned.clone();
        held.push(turn);
        Ok(abandoned)
    }
}
