//! Civil dates for `strftime_now`, `datetime` and `date_string`.
//!
//! Hand-written rather than taken from `chrono`: the only needs are a Unix-seconds → civil-date
//! conversion (H. Hinnant's algorithms, a few lines) and C `strftime` with its "C" locale names,
//! which llama.cpp calls. `chrono`'s `format` differs from C for several specifiers a template may
//! use (`%Q` and unknown ones are errors there; C prints them as they are), needs a clock
//! (`wasm32-unknown-unknown` has none; the date comes from JavaScript) and adds size to the wasm
//! module for no gain.

use minijinja::Value;

/// A civil date and time (no time zone) for `datetime`, `date_string` and `strftime_now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatDate {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl ChatDate {
    /// A date at midnight; `None` when it does not exist.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Self> {
        Self::with_time(year, month, day, 0, 0, 0)
    }

    /// A date and time; `None` when it does not exist.
    pub fn with_time(
        year: i32,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Option<Self> {
        let ok = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(i64::from(year), month)
            && hour < 24
            && minute < 60
            && second < 61;
        ok.then_some(ChatDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// The UTC date and time of a Unix timestamp (seconds). In the browser:
    /// `Math.floor((Date.now() - new Date().getTimezoneOffset() * 60000) / 1000)` gives local time.
    pub fn from_unix_seconds(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // civil_from_days (H. Hinnant)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        ChatDate {
            year: year.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// The current UTC time, where the platform has a clock (`None` on wasm32-unknown-unknown).
    pub fn now_utc() -> Option<Self> {
        #[cfg(all(target_arch = "wasm32", not(target_os = "wasi")))]
        {
            None
        }
        #[cfg(not(all(target_arch = "wasm32", not(target_os = "wasi"))))]
        {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some(Self::from_unix_seconds(i64::try_from(d.as_secs()).ok()?))
        }
    }

    /// 0 = Sunday.
    fn weekday(&self) -> usize {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        (days + 4).rem_euclid(7) as usize
    }

    /// 1-based day of the year.
    fn day_of_year(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day)
            - days_from_civil(i64::from(self.year), 1, 1)
            + 1
    }

    /// C `strftime` in the "C" locale for the common conversions (`%Y %y %C %m %d %e %j %H %I
    /// %M %S %p %b %h %B %a %A %u %w %F %T %D %R %c %x %X %n %t %% %s %Z %z`), with glibc's `-`
    /// flag (no padding, `%-d`). The time zone is UTC. Unknown conversions are copied as written.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let no_pad = chars.peek() == Some(&'-');
            if no_pad {
                chars.next();
            }
            let Some(conv) = chars.next() else {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                break;
            };
            let num = |v: i64, width: usize| -> String {
                if no_pad {
                    v.to_string()
                } else {
                    format!("{v:0width$}")
                }
            };
            let month_name = MONTHS[usize::from(self.month.clamp(1, 12) - 1)];
            let day_name = WEEKDAYS[self.weekday()];
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match conv {
                'Y' => out.push_str(&self.year.to_string()),
                'y' => out.push_str(&num(i64::from(self.year).rem_euclid(100), 2)),
                'C' => out.push_str(&num(i64::from(self.year).div_euclid(100), 2)),
                'm' => out.push_str(&num(i64::from(self.month), 2)),
                'd' => out.push_str(&num(i64::from(self.day), 2)),
                'e' => {
                    if no_pad {
                        out.push_str(&self.day.to_string())
                    } else {
                        out.push_str(&format!("{:>2}", self.day))
                    }
                }
                'j' => out.push_str(&num(self.day_of_year(), 3)),
                'H' => out.push_str(&num(i64::from(self.hour), 2)),
                'I' => out.push_str(&num(i64::from(hour12), 2)),
                'M' => out.push_str(&num(i64::from(self.minute), 2)),
                'S' => out.push_str(&num(i64::from(self.second), 2)),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'b' | 'h' => out.push_str(&month_name[..3]),
                'B' => out.push_str(month_name),
                'a' => out.push_str(&day_name[..3]),
                'A' => out.push_str(day_name),
                'u' => out.push_str(&(((self.weekday() + 6) % 7) + 1).to_string()),
                'w' => out.push_str(&self.weekday().to_string()),
                'F' => out.push_str(&self.strftime("%Y-%m-%d")),
                'T' => out.push_str(&self.strftime("%H:%M:%S")),
                'D' => out.push_str(&self.strftime("%m/%d/%y")),
                'R' => out.push_str(&self.strftime("%H:%M")),
                'c' => out.push_str(&self.strftime("%a %b %e %H:%M:%S %Y")),
                'x' => out.push_str(&self.strftime("%m/%d/%y")),
                'X' => out.push_str(&self.strftime("%H:%M:%S")),
                's' => {
                    let days = days_from_civil(i64::from(self.year), self.month, self.day);
                    let secs = days * 86_400
                        + i64::from(self.hour) * 3600
                        + i64::from(self.minute) * 60
                        + i64::from(self.second);
                    out.push_str(&secs.to_string())
                }
                'Z' => out.push_str("UTC"),
                'z' => out.push_str("+0000"),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if no_pad {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }

    pub(super) fn to_value(self) -> Value {
        Value::from(vec![
            Value::from(self.year),
            Value::from(self.month),
            Value::from(self.day),
            Value::from(self.hour),
            Value::from(self.minute),
            Value::from(self.second),
        ])
    }

    pub(super) fn from_value(v: &Value) -> Option<Self> {
        let parts: Vec<i64> = v.try_iter().ok()?.filter_map(|x| x.as_i64()).collect();
        let [y, mo, d, h, mi, s] = parts[..] else {
            return None;
        };
        Self::with_time(
            i32::try_from(y).ok()?,
            u8::try_from(mo).ok()?,
            u8::try_from(d).ok()?,
            u8::try_from(h).ok()?,
            u8::try_from(mi).ok()?,
            u8::try_from(s).ok()?,
        )
    }
}

/// The date used when none is given and the platform has no clock.
pub(super) const EPOCH: ChatDate = ChatDate {
    year: 1970,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
};
