//! How long the writes may take: the invocation's deadline less the time kept to clean up.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Error;

/// Time kept back from the invocation deadline to delete partial output and answer.
pub const CLEANUP_RESERVE: Duration = Duration::from_secs(3);

/// Time kept, past the clean-up reserve, for what follows a wait for another writer's lease:
/// the commit and the removals of a write mode.
pub const AFTER_TURN: Duration = Duration::from_secs(5);

/// Until when a write may wait for other writers' leases: the deadline less
/// [`CLEANUP_RESERVE`] and [`AFTER_TURN`] (a time already past: one look, no wait); `None`
/// without a deadline.
pub fn turn_give_up(deadline: Option<SystemTime>) -> Option<SystemTime> {
    deadline.map(|d| {
        d.checked_sub(CLEANUP_RESERVE + AFTER_TURN)
            .unwrap_or(UNIX_EPOCH)
    })
}

/// The invocation's deadline from the runtime's milliseconds since the Unix epoch. `0`, or a
/// time already past on arrival (from a tool that does not model deadlines, such as cargo
/// lambda's emulator; Lambda's is always ahead), means none.
pub fn deadline_from(deadline_ms: u64, now: SystemTime) -> Option<SystemTime> {
    Some(UNIX_EPOCH + Duration::from_millis(deadline_ms)).filter(|deadline| *deadline > now)
}

/// How long the writes may take: the time left before the deadline less [`CLEANUP_RESERVE`];
/// `None` without a deadline.
///
/// # Errors
/// `S3WriteFailed` when no more than the reserve is left.
pub fn write_budget(
    deadline: Option<SystemTime>,
    now: SystemTime,
) -> Result<Option<Duration>, Error> {
    let Some(deadline) = deadline else {
        return Ok(None);
    };
    let left = deadline.duration_since(now).unwrap_or_default();
    match left.checked_sub(CLEANUP_RESERVE) {
        Some(budget) if !budget.is_zero() => Ok(Some(budget)),
        _ => Err(Error::S3WriteFailed(format!(
            "only {} ms were left before the invocation deadline, less than the {} ms kept to clean up; nothing was written (raise the function's timeout)",
            left.as_millis(),
            CLEANUP_RESERVE.as_millis()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_write_budget_keeps_time_to_clean_up() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs: u64| Some(now + Duration::from_secs(secs));
        assert_eq!(write_budget(None, now).unwrap(), None);
        assert_eq!(
            write_budget(at(60), now).unwrap(),
            Some(Duration::from_secs(57))
        );
        // A deadline that passes while the objects are built leaves no time either.
        let passed = Some(now - Duration::from_millis(5));
        for deadline in [at(3), at(1), passed] {
            let err = write_budget(deadline, now).unwrap_err();
            assert_eq!(err.error_type(), "S3WriteFailed");
            assert!(err.to_string().contains("nothing was written"), "{err}");
        }
    }

    #[test]
    fn a_write_stops_waiting_for_a_turn_with_time_left_to_commit_and_clean_up() {
        let deadline = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(turn_give_up(None), None);
        assert_eq!(
            turn_give_up(Some(deadline)),
            Some(UNIX_EPOCH + Duration::from_secs(992))
        );
    }

    #[test]
    fn no_deadline_or_one_already_past_on_arrival_means_none() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(deadline_from(0, now), None);
        assert_eq!(deadline_from(1_000_000 * 1000, now), None);
        assert_eq!(
            deadline_from(1_000_060 * 1000, now),
            Some(now + Duration::from_secs(60))
        );
    }
}
