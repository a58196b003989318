//! Message groups of a producer's tasks: how many groups they are spread over, and how much of
//! them one heavy group (a bulk uploader, a noisy tenant) takes.
//!
//! `groups: 20` spreads a producer's tasks uniformly over `group-0` … `group-19`;
//! `groups: {"count": 200, "heavy_share": 0.5}` sends each task to the group named `heavy`
//! with chance 0.5 and spreads the rest over `group-0` … `group-199`. Producers share the
//! names, so several producers may feed one heavy group. The report then gives waits per
//! [`GroupClass`]: the heavy group, the light ones, and the ungrouped messages.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Rng;

/// The name of the heavy group.
pub const HEAVY_GROUP: &str = "heavy";

/// How a producer assigns its tasks to message groups. Written as a number (`count` alone) or
/// as `{count, heavy_share}`; it serializes as a number when `heavy_share` is 0, so scenarios
/// without a heavy group read as they always did.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProducerGroups {
    /// Light groups, `group-0` … `group-{count-1}`, drawn uniformly; 0: the tasks that do not
    /// go to the heavy group are published without a group.
    pub count: u32,
    /// Chance (0 to 1) that a task goes to the group `heavy` instead.
    pub heavy_share: f64,
}

impl ProducerGroups {
    /// `count` light groups and no heavy one.
    #[must_use]
    pub fn uniform(count: u32) -> Self {
        Self {
            count,
            heavy_share: 0.0,
        }
    }

    /// Whether the producer publishes any grouped task.
    #[must_use]
    pub fn used(&self) -> bool {
        self.count > 0 || self.heavy_share > 0.0
    }

    /// Whether some tasks stay ungrouped.
    pub(crate) fn leaves_ungrouped(&self) -> bool {
        self.count == 0 && self.heavy_share < 1.0
    }

    /// Checks the fields; `at` names the producer.
    pub(crate) fn validate(&self, at: &str, max_count: u32) -> Result<(), String> {
        if self.count > max_count {
            return Err(format!(
                "{at}.groups: at most {max_count} groups, got {}",
                self.count
            ));
        }
        if !(self.heavy_share.is_finite() && (0.0..=1.0).contains(&self.heavy_share)) {
            return Err(format!(
                "{at}.groups.heavy_share must be between 0 and 1, got {}",
                self.heavy_share
            ));
        }
        Ok(())
    }

    /// Draws the group of one task. A producer without a heavy group draws exactly as one with
    /// `groups: count` always did (one `next_u64`), so those runs keep their hashes.
    pub(crate) fn draw(&self, rng: &mut Rng) -> Option<String> {
        if self.heavy_share > 0.0 && (self.heavy_share >= 1.0 || rng.next_f64() < self.heavy_share)
        {
            return Some(HEAVY_GROUP.to_owned());
        }
        (self.count > 0).then(|| format!("group-{}", rng.next_u64() % u64::from(self.count)))
    }
}

impl Serialize for ProducerGroups {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.heavy_share == 0.0 {
            return s.serialize_u32(self.count);
        }
        Written {
            count: self.count,
            heavy_share: self.heavy_share,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ProducerGroups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(GroupsVisitor)
    }
}

/// Reads a number or an object, keeping the object's own errors (an unknown field is named).
struct GroupsVisitor;

impl<'de> Visitor<'de> for GroupsVisitor {
    type Value = ProducerGroups;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number of groups or {count, heavy_share}")
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
        u32::try_from(n)
            .map(ProducerGroups::uniform)
            .map_err(|_| E::custom(format!("groups: {n} is too large")))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
        u64::try_from(n)
            .map_err(|_| E::custom(format!("groups: {n} is negative")))
            .and_then(|n| self.visit_u64(n))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let w = Written::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(ProducerGroups {
            count: w.count,
            heavy_share: w.heavy_share,
        })
    }
}

/// The object form.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Written {
    #[serde(default)]
    count: u32,
    #[serde(default)]
    heavy_share: f64,
}

/// The classes the report's per-group figures are kept for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupClass {
    /// The group `heavy`.
    Heavy,
    /// Every other group.
    Light,
    /// Messages without a group (follow-ups, schedule runs, ungrouped producers).
    Ungrouped,
}

impl GroupClass {
    /// All classes, in report order.
    pub const ALL: [Self; 3] = [Self::Heavy, Self::Light, Self::Ungrouped];

    /// The class of a message published with `group`.
    #[must_use]
    pub fn of(group: Option<&str>) -> Self {
        match group {
            Some(HEAVY_GROUP) => Self::Heavy,
            Some(_) => Self::Light,
            None => Self::Ungrouped,
        }
    }

    /// Its name in the report.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Heavy => "heavy",
            Self::Light => "light",
            Self::Ungrouped => "ungrouped",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_and_an_object_both_read_and_write_back() {
        let n: ProducerGroups = serde_json::from_str("20").unwrap();
        assert_eq!(n, ProducerGroups::uniform(20));
        assert_eq!(serde_json::to_string(&n).unwrap(), "20");
        let o: ProducerGroups =
            serde_json::from_str(r#"{"count": 200, "heavy_share": 0.5}"#).unwrap();
        assert_eq!((o.count, o.heavy_share), (200, 0.5));
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(serde_json::from_str::<ProducerGroups>(&text).unwrap(), o);
        let plain: ProducerGroups = serde_json::from_str(r#"{"count": 7}"#).unwrap();
        assert_eq!(serde_json::to_string(&plain).unwrap(), "7");
        let err = serde_json::from_str::<ProducerGroups>(r#"{"count": 2, "heavy": 1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `heavy`"), "{err}");
        assert!(serde_json::from_str::<ProducerGroups>("-1").is_err());
        assert!(serde_json::from_str::<ProducerGroups>("\"many\"").is_err());
    }

    #[test]
    fn without_a_heavy_share_the_draw_is_the_plain_uniform_one() {
        // Scenarios written before heavy groups existed keep their run hashes.
        let (mut a, mut b) = (Rng::new(4), Rng::new(4));
        let g = ProducerGroups::uniform(37);
        for _ in 0..1000 {
            let expected = format!("group-{}", b.next_u64() % 37);
            assert_eq!(g.draw(&mut a), Some(expected));
        }
        assert_eq!(ProducerGroups::uniform(0).draw(&mut a), None);
    }

    #[test]
    fn the_heavy_share_is_drawn_and_the_rest_spread() {
        let g = ProducerGroups {
            count: 10,
            heavy_share: 0.3,
        };
        let mut rng = Rng::new(9);
        let mut heavy = 0;
        let mut light = std::collections::BTreeSet::new();
        for _ in 0..10_000 {
            match g.draw(&mut rng) {
                Some(name) if name == HEAVY_GROUP => heavy += 1,
                Some(name) => {
                    light.insert(name);
                }
                None => panic!("every task is grouped"),
            }
        }
        assert!((2_700..3_300).contains(&heavy), "{heavy}");
        assert_eq!(light.len(), 10);
        let all_heavy = ProducerGroups {
            count: 0,
            heavy_share: 1.0,
        };
        assert_eq!(all_heavy.draw(&mut rng).as_deref(), Some(HEAVY_GROUP));
        let half = ProducerGroups {
            count: 0,
            heavy_share: 0.5,
        };
        let none = (0..1000).filter(|_| half.draw(&mut rng).is_none()).count();
        assert!((400..600).contains(&none), "{none}");
    }
}
