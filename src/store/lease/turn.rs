//! A write's turn: the leases it holds while its objects become visible and what it replaces
//! is removed, so that concurrent writes of one folder end as if they had run one after the
//! other.
//!
//! Two kinds of claim, each in one target folder:
//! - **replace** (`overwrite`, `overwrite_partitions`, a job's finish with a mode): a
//!   partition folder, or the whole folder. Exclusive with the same folder and with any folder
//!   above or below it: a whole-folder overwrite and a partition overwrite of that folder take
//!   turns; two partitions do not.
//! - **work**: the keys of one piece of work (the id they hold), so that two deliveries of
//!   the same work (a duplicated notification, a retried batch racing its first attempt) take
//!   turns instead of removing each other's objects.
//!
//! Every claim of a write is taken in one order (bucket, then lease key), first all at once
//! and, where one is held, one after the other from there, so two writes never wait on each
//! other. A held lease is waited for until it is released or its holder's time is past (it
//! is then taken over), or until the waiter's own time runs out (`WriteConflict`). Once all
//! are held, the writer lists each folder's leases: another writer's replace lease above one
//! of its own makes it give everything back and start again when that one is gone; one below
//! is waited for while holding (that writer, seeing this one above it, gives way, or finishes).

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;

use super::{Holder, LEASES, Read};
use crate::Error;
use crate::store::s3::S3Store;

/// A lease outlives its holder's deadline by this much: clocks differ a little, and a request
/// sent just before the deadline may still land.
pub const GRACE: Duration = Duration::from_secs(5);

/// Without a deadline (a local emulator), a holder may run as long as Lambda lets any
/// invocation run.
pub const LONGEST_INVOCATION: Duration = Duration::from_secs(900);

/// The first pause between two looks at a held lease; each next pause doubles, up to
/// [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(40);
const LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// Leases written at once when a turn starts.
const AT_ONCE: usize = 16;

/// What a write claims in one target folder.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    pub bucket: String,
    /// The target folder's key prefix (ending in `/`).
    pub folder: String,
    pub scope: Scope,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// A partition folder, relative to the target folder (`dt=2024-01-01/`), or `""` for the
    /// whole folder.
    Replace(String),
    /// The id a piece of work's keys hold.
    Work(String),
}

impl Claim {
    pub fn replace(bucket: &str, folder: &str, partition: &str) -> Claim {
        Claim {
            bucket: bucket.to_owned(),
            folder: folder.to_owned(),
            scope: Scope::Replace(partition.to_owned()),
        }
    }

    pub fn work(bucket: &str, folder: &str, id: &str) -> Claim {
        Claim {
            bucket: bucket.to_owned(),
            folder: folder.to_owned(),
            scope: Scope::Work(id.to_owned()),
        }
    }

    /// Its lease object's key: `<folder>_leases/<partition>_lease`, or
    /// `<folder>_leases/_work-<id>`.
    pub fn key(&self) -> String {
        match &self.scope {
            Scope::Replace(path) => format!("{}{LEASES}{path}_lease", self.folder),
            Scope::Work(id) => format!("{}{LEASES}_work-{id}", self.folder),
        }
    }

    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key())
    }

    /// What it guards, for a message.
    fn describe(&self) -> String {
        match &self.scope {
            Scope::Replace(path) if path.is_empty() => {
                format!("the folder s3://{}/{}", self.bucket, self.folder)
            }
            Scope::Replace(path) => {
                format!("the partition s3://{}/{}{path}", self.bucket, self.folder)
            }
            Scope::Work(id) => format!(
                "the objects of work {id} in s3://{}/{}",
                self.bucket, self.folder
            ),
        }
    }
}

/// The partition folder a listed key of `folder` is the replace lease of (`""`: the whole
/// folder); `None` for any other key.
fn replaced_by<'k>(folder: &str, key: &'k str) -> Option<&'k str> {
    let path = key
        .strip_prefix(folder)?
        .strip_prefix(LEASES)?
        .strip_suffix("_lease")?;
    (path.is_empty() || path.ends_with('/')).then_some(path)
}

/// Whether two partition folders overlap: one is the other, or lies inside it.
fn overlap(a: &str, b: &str) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

/// When a holder whose invocation ends at `deadline` (none: a local emulator's) can no longer
/// be running, as milliseconds since the Unix epoch.
pub fn expiry(deadline: Option<SystemTime>, now: SystemTime) -> u64 {
    let end = deadline.unwrap_or(now + LONGEST_INVOCATION) + GRACE;
    end.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Whether `read` is a lease whose holder can no longer be running.
fn expired(read: &Read) -> bool {
    read.holder
        .as_ref()
        .is_some_and(|h| h.expires_ms < now_ms())
}

/// Waits out one pause, or what is left before `give_up`; whether time is left after it.
async fn pause(wait: &mut Duration, give_up: Option<SystemTime>) -> bool {
    let left = give_up.map(|at| at.duration_since(SystemTime::now()).unwrap_or_default());
    if left.is_some_and(|left| left.is_zero()) {
        return false;
    }
    tokio::time::sleep(left.map_or(*wait, |left| left.min(*wait))).await;
    *wait = (*wait * 2).min(LONGEST_PAUSE);
    true
}

/// The leases a write holds: see the module docs.
pub struct Turn {
    store: S3Store,
    holder: Holder,
    held: Vec<(Claim, String)>,
    /// `(bucket, folder, id)` of the works whose holders' leases this turn took over once
    /// their time was past: the uploads they left are theirs to abort.
    pub abandoned: Vec<(String, String, String)>,
}

/// How one look at the leases that overlap a turn's ended.
enum Overlaps {
    None,
    /// Another writer's lease over a folder that holds one of ours: give way.
    Above(Claim),
    /// Other writers' leases inside folders of ours: wait for them.
    Below(Vec<Claim>),
}

impl Turn {
    /// Takes every lease of `claims` for `holder`, waiting while other writers hold them.
    ///
    /// # Errors
    /// `WriteConflict` when a lease is still held by another live writer at `give_up` (every
    /// lease taken is given back); `S3WriteFailed` when S3 fails a lease's request.
    pub async fn take(
        store: &S3Store,
        mut claims: Vec<Claim>,
        holder: Holder,
        give_up: Option<SystemTime>,
    ) -> Result<Turn, Error> {
        claims.sort_by_cached_key(|c| (c.bucket.clone(), c.key()));
        claims.dedup();
        let mut turn = Turn {
            store: store.clone(),
            holder,
            held: Vec::with_capacity(claims.len()),
            abandoned: Vec::new(),
        };
        match turn.take_all(&claims, give_up).await {
            Ok(()) => Ok(turn),
            Err(e) => {
                turn.release().await;
                Err(e)
            }
        }
    }

    async fn take_all(
        &mut self,
        claims: &[Claim],
        give_up: Option<SystemTime>,
    ) -> Result<(), Error> {
        loop {
            while self.held.len() < claims.len() {
                if !self.take_rest(claims).await? {
                    let busy = &claims[self.held.len()];
                    self.wait_for(busy, give_up).await?;
                }
            }
            let mut wait = FIRST_PAUSE;
            loop {
                match self.overlaps().await? {
                    Overlaps::None => return Ok(()),
                    Overlaps::Below(below) => {
                        if !pause(&mut wait, give_up).await {
                            return Err(self.conflict(&below[0]));
                        }
                    }
                    Overlaps::Above(above) => {
                        self.release().await;
                        self.until_free(&above, give_up).await?;
                        break;
                    }
                }
            }
        }
    }

    /// Writes the leases of `claims` not held yet, at once; keeps those that came in order
    /// and gives back any taken after the first one held elsewhere. Whether all are held.
    async fn take_rest(&mut self, claims: &[Claim]) -> Result<bool, Error> {
        let rest = &claims[self.held.len()..];
        let (store, holder) = (&self.store, &self.holder);
        let mut tries = Vec::with_capacity(rest.len());
        for chunk in rest.chunks(AT_ONCE) {
            let keys: Vec<String> = chunk.iter().map(Claim::key).collect();
            let writes = (chunk.iter().zip(&keys))
                .map(|(c, key)| store.write_lease(&c.bucket, key, holder, None));
            tries.extend(join_all(writes).await);
        }
        let mut in_order = true;
        let mut out_of_order = Vec::new();
        let mut failure = None;
        for (claim, tried) in rest.iter().zip(tries) {
            match tried {
                Ok(Some(etag)) if in_order => self.held.push((claim.clone(), etag)),
                Ok(Some(etag)) => out_of_order.push((claim.clone(), etag)),
                Ok(None) => in_order = false,
                Err(e) => {
                    in_order = false;
                    failure.get_or_insert(e);
                }
            }
        }
        give_back(&self.store, out_of_order).await;
        match failure {
            Some(e) => Err(e),
            None => Ok(in_order),
        }
    }

    /// Waits until `claim`'s lease is free or its holder's time is past, and takes it.
    async fn wait_for(&mut self, claim: &Claim, give_up: Option<SystemTime>) -> Result<(), Error> {
        let (bucket, key) = (&claim.bucket, claim.key());
        let mut wait = FIRST_PAUSE;
        loop {
            let taken = match self.store.read_lease(bucket, &key).await? {
                None => {
                    self.store
                        .write_lease(bucket, &key, &self.holder, None)
                        .await?
                }
                // This turn's own: its write landed, but the answer was lost and the SDK's
                // retry met it.
                Some(read) if read.holder.as_ref() == Some(&self.holder) => Some(read.etag),
                Some(read) if expired(&read) => {
                    let taken = (self.store)
                        .write_lease(bucket, &key, &self.holder, Some(&read.etag))
                        .await?;
                    if taken.is_some() {
                        self.took_over(claim, read);
                    }
                    taken
                }
                Some(_) => None,
            };
            if let Some(etag) = taken {
                self.held.push((claim.clone(), etag));
                return Ok(());
            }
            if !pause(&mut wait, give_up).await {
                return Err(self.conflict(claim));
            }
        }
    }

    /// Notes what the killed holder of a lease taken over was writing.
    fn took_over(&mut self, claim: &Claim, read: Read) {
        let Some(dead) = read.holder else { return };
        tracing::warn!(
            lease = claim.uri(),
            holder = dead.by,
            expired_ms = dead.expires_ms,
            "took over a lease whose holder's time had passed"
        );
        for id in dead.works {
            let entry = (claim.bucket.clone(), claim.folder.clone(), id);
            if !self.abandoned.contains(&entry) {
                self.abandoned.push(entry);
            }
        }
    }

    /// Waits until `claim`'s lease (another writer's) is gone or its holder's time is past.
    async fn until_free(&self, claim: &Claim, give_up: Option<SystemTime>) -> Result<(), Error> {
        let mut wait = FIRST_PAUSE;
        loop {
            match self.store.read_lease(&claim.bucket, &claim.key()).await? {
                None => return Ok(()),
                Some(read) if expired(&read) => return Ok(()),
                Some(_) if !pause(&mut wait, give_up).await => return Err(self.conflict(claim)),
                Some(_) => {}
            }
        }
    }

    /// Other live writers' replace leases that overlap this turn's, in every folder it
    /// replaces in.
    async fn overlaps(&self) -> Result<Overlaps, Error> {
        let folders: BTreeSet<(&str, &str)> = self
            .held
            .iter()
            .filter(|(c, _)| matches!(c.scope, Scope::Replace(_)))
            .map(|(c, _)| (c.bucket.as_str(), c.folder.as_str()))
            .collect();
        let mut below = Vec::new();
        for (bucket, folder) in folders {
            let mine: Vec<&str> = self
                .held
                .iter()
                .filter(|(c, _)| c.bucket == bucket && c.folder == folder)
                .filter_map(|(c, _)| match &c.scope {
                    Scope::Replace(path) => Some(path.as_str()),
                    Scope::Work(_) => None,
                })
                .collect();
            let listed = (self.store)
                .list_keys(bucket, &format!("{folder}{LEASES}"))
                .await?;
            for key in &listed {
                let Some(path) = replaced_by(folder, key) else {
                    continue;
                };
                if mine.contains(&path) || !mine.iter().any(|m| overlap(m, path)) {
                    continue;
                }
                let Some(read) = self.store.read_lease(bucket, key).await? else {
                    continue;
                };
                let own = (read.holder.as_ref())
                    .is_some_and(|h| h.sandbox == self.holder.sandbox && h.by == self.holder.by);
                if own || expired(&read) {
                    continue;
                }
                let claim = Claim::replace(bucket, folder, path);
                if mine.iter().any(|m| m.starts_with(path)) {
                    return Ok(Overlaps::Above(claim));
                }
                below.push(claim);
            }
        }
        Ok(match below.is_empty() {
            true => Overlaps::None,
            false => Overlaps::Below(below),
        })
    }

    fn conflict(&self, claim: &Claim) -> Error {
        Error::WriteConflict(format!(
            "another write held {} (its lease {}) until the time left to wait ran out",
            claim.describe(),
            claim.uri()
        ))
    }

    /// The claims held.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.held.iter().map(|(c, _)| c)
    }

    /// Gives back every lease held (each only if it is still this turn's).
    pub async fn release(&mut self) {
        give_back(&self.store, std::mem::take(&mut self.held)).await;
    }
}

/// Deletes each lease of `leases` that still has its ETag; logs what could not be.
async fn give_back(store: &S3Store, leases: Vec<(Claim, String)>) {
    let mut released = Vec::with_capacity(leases.len());
    for chunk in leases.chunks(AT_ONCE) {
        let keys: Vec<String> = chunk.iter().map(|(claim, _)| claim.key()).collect();
        let deletes = (chunk.iter().zip(&keys))
            .map(|((claim, etag), key)| store.release_lease(&claim.bucket, key, etag));
        released.extend(chunk.iter().map(|(c, _)| c).zip(join_all(deletes).await));
    }
    for (claim, result) in released {
        match result {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                lease = claim.uri(),
                "a lease was no longer this write's when it was given back"
            ),
            Err(e) => {
                tracing::warn!(lease = claim.uri(), error = %e, "a lease could not be given back: it stands until its time is past")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_sit_in_the_folders_hidden_leases_folder() {
        let folder = Claim::replace("b", "out/x/", "");
        assert_eq!(folder.key(), "out/x/_leases/_lease");
        let day = Claim::replace("b", "out/x/", "dt=1/region=eu/");
        assert_eq!(day.key(), "out/x/_leases/dt=1/region=eu/_lease");
        let work = Claim::work("b", "out/x/", "0f1e");
        assert_eq!(work.key(), "out/x/_leases/_work-0f1e");
        assert_eq!(replaced_by("out/x/", &folder.key()), Some(""));
        assert_eq!(replaced_by("out/x/", &day.key()), Some("dt=1/region=eu/"));
        assert_eq!(replaced_by("out/x/", &work.key()), None);
        // A sibling folder's leases are not this folder's.
        assert_eq!(replaced_by("out/x/", "out/xy/_leases/_lease"), None);
    }

    #[test]
    fn a_whole_folder_overlaps_its_partitions_and_partitions_only_their_own() {
        assert!(overlap("", "dt=1/"));
        assert!(overlap("dt=1/", "dt=1/h=2/"));
        assert!(!overlap("dt=1/", "dt=10/"));
        assert!(!overlap("dt=1/", "dt=2/"));
    }

    #[test]
    fn a_lease_outlives_its_holders_deadline_by_the_grace() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let deadline = now + Duration::from_secs(60);
        assert_eq!(expiry(Some(deadline), now), 1_065_000);
        assert_eq!(expiry(None, now), 1_905_000);
    }
}
