//! The range a report covers: local dates in the shop's time zone (its "today" is local), turned
//! into the quarter-hour slots the read models count in, and cut into hours, days or weeks.
//!
//! Every time zone in use today is offset from UTC by a whole number of quarter hours, so a local
//! midnight or a local hour always begins a slot and a local range is an exact range of slots.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// Seconds in a slot.
pub const SLOT_SECONDS: i64 = 900;

/// The most days one report covers (ten years).
pub const MAX_DAYS: i64 = 3660;
/// The most buckets one trend has.
pub const MAX_BUCKETS: usize = 1000;

/// The slot an instant falls in.
pub fn slot_of(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(SLOT_SECONDS)
}

/// The instant a slot begins.
pub fn slot_start(slot: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(slot * SLOT_SECONDS, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A range of whole local days, `from` to `to` inclusive, in `zone`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub zone: Tz,
    pub from: NaiveDate,
    pub to: NaiveDate,
}

/// How a trend cuts its period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Hour,
    Day,
    /// Weeks begin on Monday; the first and last may be cut short by the period.
    Week,
}

impl Interval {
    pub const NAMES: [&'static str; 3] = ["hour", "day", "week"];

    /// One of [`Self::NAMES`], in any letter case.
    pub fn parse(text: &str) -> Option<Interval> {
        match text.to_ascii_lowercase().as_str() {
            "hour" => Some(Interval::Hour),
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
        }
    }
}

/// One bucket of a trend: from `start` (local) up to the next bucket's start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Tz>,
    pub first_slot: i64,
    pub end_slot: i64,
}

/// The instant a local wall-clock time first happens in `zone`; a time skipped by a clock
/// change is taken as the first moment after the gap.
pub fn local_instant(zone: Tz, wall: NaiveDateTime) -> DateTime<Tz> {
    let mut probe = wall;
    for _ in 0..16 {
        if let Some(t) = zone.from_local_datetime(&probe).earliest() {
            return t;
        }
        probe += Duration::minutes(15);
    }
    // No zone skips four hours; fall back to reading the wall time as UTC.
    zone.from_utc_datetime(&wall)
}

impl Period {
    /// Today, in `zone`.
    pub fn today(zone: Tz, now: DateTime<Utc>) -> Period {
        let day = now.with_timezone(&zone).date_naive();
        Period {
            zone,
            from: day,
            to: day,
        }
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    fn day_start(&self, day: NaiveDate) -> DateTime<Tz> {
        local_instant(self.zone, day.and_time(NaiveTime::MIN))
    }

    /// When the period begins, local.
    pub fn start(&self) -> DateTime<Tz> {
        self.day_start(self.from)
    }

    /// When it ends (the next day's start), local.
    pub fn end(&self) -> DateTime<Tz> {
        self.day_start(self.to.succ_opt().unwrap_or(self.to))
    }

    /// The slots it covers: `first..end`.
    pub fn slots(&self) -> (i64, i64) {
        (
            slot_of(self.start().with_timezone(&Utc)),
            slot_of(self.end().with_timezone(&Utc)),
        )
    }

    /// The period cut into `interval`s, or `None` when that makes more than [`MAX_BUCKETS`].
    pub fn buckets(&self, interval: Interval) -> Option<Vec<Bucket>> {
        let mut starts: Vec<DateTime<Tz>> = Vec::new();
        let end = self.end();
        let mut day = self.from;
        while day <= self.to {
            match interval {
                Interval::Hour => {
                    for hour in 0..24 {
                        let wall = day.and_time(NaiveTime::from_hms_opt(hour, 0, 0)?);
                        starts.push(local_instant(self.zone, wall));
                    }
                }
                Interval::Day => starts.push(self.day_start(day)),
                Interval::Week => {
                    if day == self.from || day.weekday() == chrono::Weekday::Mon {
                        starts.push(self.day_start(day));
                    }
                }
            }
            if starts.len() > MAX_BUCKETS {
                return None;
            }
            day = day.succ_opt()?;
        }
        // A clock change can make two wall times the same instant, or put one past the end.
        starts.dedup();
        starts.retain(|s| *s < end);
        let slots: Vec<i64> = starts
            .iter()
            .map(|s| slot_of(s.with_timezone(&Utc)))
            .collect();
        let end_slot = slot_of(end.with_timezone(&Utc));
        Some(
            starts
                .into_iter()
                .enumerate()
                .map(|(i, start)| Bucket {
                    start,
                    first_slot: slots[i],
                    end_slot: slots.get(i + 1).copied().unwrap_or(end_slot),
                })
                .collect(),
        )
    }
}

/// The bucket (an index into `buckets`, sorted by slot) a slot falls in.
pub fn bucket_of(buckets: &[Bucket], slot: i64) -> Option<usize> {
    let i = buckets.partition_point(|b| b.first_slot <= slot);
    let i = i.checked_sub(1)?;
    (slot < buckets[i].end_slot).then_some(i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    #[test]
    fn a_local_day_is_a_range_of_whole_slots() {
        let p = Period {
            zone: chrono_tz::Asia::Kolkata,
            from: date("2026-03-01"),
            to: date("2026-03-01"),
        };
        // Midnight in Kolkata is 18:30 UTC the day before.
        assert_eq!(
            p.start().with_timezone(&Utc).to_rfc3339(),
            "2026-02-28T18:30:00+00:00"
        );
        let (first, end) = p.slots();
        assert_eq!(end - first, 96);
        assert_eq!(slot_start(first), p.start().with_timezone(&Utc));
    }

    #[test]
    fn days_with_a_clock_change_have_23_or_25_hours() {
        let spring = Period {
            zone: chrono_tz::Europe::Berlin,
            from: date("2026-03-29"),
            to: date("2026-03-29"),
        };
        let hours = spring.buckets(Interval::Hour).unwrap();
        assert_eq!(hours.len(), 23, "02:00 does not happen");
        let (first, end) = spring.slots();
        assert_eq!(end - first, 23 * 4);
        let autumn = Period {
            from: date("2026-10-25"),
            to: date("2026-10-25"),
            ..spring
        };
        let hours = autumn.buckets(Interval::Hour).unwrap();
        // 02:00 happens twice; its bucket holds both hours.
        assert_eq!(hours.len(), 24);
        let (first, end) = autumn.slots();
        assert_eq!(end - first, 25 * 4);
        assert_eq!(hours[2].end_slot - hours[2].first_slot, 8);
    }

    #[test]
    fn weeks_begin_on_monday_and_are_cut_by_the_period() {
        let p = Period {
            zone: chrono_tz::UTC,
            from: date("2026-12-02"), // a Wednesday
            to: date("2026-12-15"),
        };
        let weeks = p.buckets(Interval::Week).unwrap();
        let starts: Vec<String> = weeks
            .iter()
            .map(|b| b.start.date_naive().to_string())
            .collect();
        assert_eq!(starts, ["2026-12-02", "2026-12-07", "2026-12-14"]);
        assert_eq!(weeks[0].end_slot - weeks[0].first_slot, 5 * 96);
        assert_eq!(weeks[2].end_slot - weeks[2].first_slot, 2 * 96);
        assert_eq!(bucket_of(&weeks, weeks[1].first_slot + 3), Some(1));
        assert_eq!(bucket_of(&weeks, weeks[0].first_slot - 1), None);
        assert_eq!(bucket_of(&weeks, weeks[2].end_slot), None);
    }

    #[test]
    fn too_many_buckets_are_refused() {
        let p = Period {
            zone: chrono_tz::UTC,
            from: date("2026-01-01"),
            to: date("2026-03-01"),
        };
        assert!(p.buckets(Interval::Hour).is_none());
        assert_eq!(p.buckets(Interval::Day).unwrap().len(), 60);
    }
}
