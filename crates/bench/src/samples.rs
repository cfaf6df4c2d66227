//! Repeated measurements of one figure, and their median: W6 and W7 time
//! the same request a few times, and the median keeps one slow repetition
//! (another process on the two cores) from deciding the figure.

use serde::Serialize;

/// The values of a figure, in the order measured.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(transparent)]
pub(crate) struct Samples(Vec<f64>);

impl Samples {
    /// Adds one value.
    pub(crate) fn push(&mut self, value: f64) {
        self.0.push(value);
    }

    /// How many values there are.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The smallest and the largest value; `None` without values.
    pub(crate) fn range(&self) -> Option<(f64, f64)> {
        let lo = self.0.iter().copied().min_by(f64::total_cmp)?;
        let hi = self.0.iter().copied().max_by(f64::total_cmp)?;
        Some((lo, hi))
    }

    /// The median (the mean of the two middle values of an even count);
    /// `None` without values.
    pub(crate) fn median(&self) -> Option<f64> {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        match sorted.len() {
            0 => None,
            len if len % 2 == 1 => Some(sorted[middle]),
            _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The median of an odd count is the middle value, of an even count
    /// the mean of the two middle ones, whatever the order measured.
    #[test]
    fn median_takes_the_middle() {
        let samples = |values: &[f64]| {
            let mut samples = Samples::default();
            values.iter().for_each(|value| samples.push(*value));
            samples
        };
        assert_eq!(samples(&[]).median(), None);
        assert_eq!(samples(&[3.0, 1.0, 2.0]).median(), Some(2.0));
        assert_eq!(samples(&[4.0, 1.0, 3.0, 2.0]).median(), Some(2.5));
    }

    /// The range is the smallest and the largest value, whatever the
    /// order measured; no values, no range.
    #[test]
    fn range_spans_the_values() {
        let mut samples = Samples::default();
        assert_eq!(samples.range(), None);
        for value in [3.0, 1.0, 2.0] {
            samples.push(value);
        }
        assert_eq!(samples.range(), Some((1.0, 3.0)));
        assert_eq!(samples.len(), 3);
    }
}
