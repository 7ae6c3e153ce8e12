//! Money in integers: prices, the cost of a call, budget amounts.
//!
//! Amounts are [`Nanos`]: billionths of the price table's currency (USD by convention), in a
//! `u64` (enough for 18 billion dollars). Prices are parsed exactly from decimal strings
//! (`"2.50"` per million tokens is 2 500 000 000 nanos), never through a float, so a month of
//! small charges adds up to the same total as the provider's invoice arithmetic.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An amount of money in nano-units (10^-9) of the price table's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nanos(pub u64);

pub const NANOS_PER_UNIT: u64 = 1_000_000_000;

impl Nanos {
    pub const ZERO: Nanos = Nanos(0);

    /// Whole currency units (dollars), for configuration and tests.
    pub const fn units(units: u64) -> Nanos {
        Nanos(units * NANOS_PER_UNIT)
    }

    pub fn saturating_add(self, other: Nanos) -> Nanos {
        Nanos(self.0.saturating_add(other.0))
    }
}

/// Why a decimal amount did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// Not of the form `123`, `123.45` (digits, at most one point with digits on both sides).
    Syntax,
    /// More than nine digits after the point: it cannot be represented exactly in nanos.
    TooPrecise,
    /// Larger than `u64::MAX` nanos.
    TooLarge,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MoneyError::Syntax => "expected a non-negative decimal such as \"2.50\"",
            MoneyError::TooPrecise => "at most 9 digits after the decimal point",
            MoneyError::TooLarge => "amount too large",
        })
    }
}

impl FromStr for Nanos {
    type Err = MoneyError;

    /// Parse a non-negative decimal (`"2.50"`, `"0.075"`, `"15"`) exactly. No sign, exponent,
    /// thousands separator or currency symbol.
    fn from_str(s: &str) -> Result<Nanos, MoneyError> {
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (s.contains('.') && !digits(frac)) {
            return Err(MoneyError::Syntax);
        }
        if frac.len() > 9 {
            return Err(MoneyError::TooPrecise);
        }
        let mut nanos: u64 = 0;
        for b in whole.bytes() {
            nanos = nanos.checked_mul(10).and_then(|n| n.checked_add(u64::from(b - b'0'))).ok_or(MoneyError::TooLarge)?;
        }
        nanos = nanos.checked_mul(NANOS_PER_UNIT).ok_or(MoneyError::TooLarge)?;
        let mut frac_nanos: u64 = 0;
        for (i, b) in frac.bytes().enumerate() {
            frac_nanos += u64::from(b - b'0') * 10u64.pow(8 - i as u32);
        }
        nanos.checked_add(frac_nanos).map(Nanos).ok_or(MoneyError::TooLarge)
    }
}

impl fmt::Display for Nanos {
    /// Decimal currency units with at least two and at most nine decimals: `2.50`, `0.000075`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / NANOS_PER_UNIT;
        let frac = format!("{:09}", self.0 % NANOS_PER_UNIT);
        let trimmed = frac.trim_end_matches('0');
        let shown = if trimmed.len() < 2 { &frac[..2] } else { trimmed };
        write!(f, "{whole}.{shown}")
    }
}

/// Token usage as the provider reported it, normalised to OpenAI semantics (the same fields as
/// the core's `edge::openai::Usage`): `input_tokens` INCLUDES `cached_input_tokens`, and
/// `output_tokens` INCLUDES `reasoning_tokens`. (Anthropic reports cache reads outside
/// `input_tokens`; the adapter adds them in before this point.)
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
}

/// One model's prices per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelPrice {
    pub input_per_million: Nanos,
    /// Cache reads; providers without a discount charge the input price.
    pub cached_input_per_million: Nanos,
    /// Output, reasoning included.
    pub output_per_million: Nanos,
}

impl ModelPrice {
    /// From decimal strings per million tokens, e.g. `("2.50", Some("1.25"), "10.00")`. Without a
    /// cached price, cached tokens cost the input price.
    pub fn parse(input: &str, cached_input: Option<&str>, output: &str) -> Result<ModelPrice, MoneyError> {
        let input_per_million: Nanos = input.parse()?;
        Ok(ModelPrice {
            input_per_million,
            cached_input_per_million: cached_input.map(str::parse).transpose()?.unwrap_or(input_per_million),
            output_per_million: output.parse()?,
        })
    }

    /// The cost of a finished call. Cached tokens are charged at the cached price and only the
    /// rest of the input at the input price (cached tokens are part of `input_tokens`, so they are
    /// not charged twice); a cached count above the input count is capped at it. Reasoning tokens
    /// are part of `output_tokens` and are not charged again. The exact sum is rounded up to the
    /// next nano once, so a sum of many calls never undercounts by more than one nano per call.
    pub fn cost(&self, usage: &TokenUsage) -> Nanos {
        let cached = usage.cached_input_tokens.min(usage.input_tokens);
        let uncached = usage.input_tokens - cached;
        self.charge(uncached, cached, usage.output_tokens)
    }

    /// The cost to reserve before the call: every input token at the full input price (the cache
    /// hit is unknown yet) and the whole output reservation.
    pub fn estimate(&self, input_tokens: u64, output_tokens: u64) -> Nanos {
        self.charge(input_tokens, 0, output_tokens)
    }

    fn charge(&self, uncached: u64, cached: u64, output: u64) -> Nanos {
        let part = |tokens: u64, price: Nanos| u128::from(tokens) * u128::from(price.0);
        let micro_nanos = part(uncached, self.input_per_million)
            .saturating_add(part(cached, self.cached_input_per_million))
            .saturating_add(part(output, self.output_per_million));
        Nanos(u64::try_from(micro_nanos.div_ceil(1_000_000)).unwrap_or(u64::MAX))
    }
}

/// Prices per model name. A name ending in `*` is a prefix (`gpt-4o*`); an exact name wins over
/// a prefix, a longer prefix over a shorter one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PriceTable {
    models: BTreeMap<String, ModelPrice>,
}

impl PriceTable {
    pub fn new() -> PriceTable {
        PriceTable::default()
    }

    pub fn insert(&mut self, model: impl Into<String>, price: ModelPrice) {
        self.models.insert(model.into(), price);
    }

    pub fn get(&self, model: &str) -> Option<&ModelPrice> {
        if let Some(price) = self.models.get(model) {
            return Some(price);
        }
        self.models
            .iter()
            .filter_map(|(pattern, price)| pattern.strip_suffix('*').filter(|p| model.starts_with(p)).map(|p| (p.len(), price)))
            .max_by_key(|(len, _)| *len)
            .map(|(_, price)| price)
    }

    /// The cost of a finished call, or `None` for a model without a price (configuration
    /// validation should refuse a budget over a model it cannot price).
    pub fn cost(&self, model: &str, usage: &TokenUsage) -> Option<Nanos> {
        self.get(model).map(|p| p.cost(usage))
    }

    pub fn estimate(&self, model: &str, input_tokens: u64, output_tokens: u64) -> Option<Nanos> {
        self.get(model).map(|p| p.estimate(input_tokens, output_tokens))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_prices_parse_exactly() {
        assert_eq!("2.50".parse(), Ok(Nanos(2_500_000_000)));
        assert_eq!("2.5".parse(), Ok(Nanos(2_500_000_000)));
        assert_eq!("15".parse(), Ok(Nanos(15_000_000_000)));
        assert_eq!("0.075".parse(), Ok(Nanos(75_000_000)));
        assert_eq!("0.000000001".parse(), Ok(Nanos(1)));
        assert_eq!("0".parse(), Ok(Nanos(0)));
        assert_eq!("18446744073.709551615".parse(), Ok(Nanos(u64::MAX)));
        assert_eq!("18446744073.709551616".parse::<Nanos>(), Err(MoneyError::TooLarge));
        assert_eq!("99999999999999999999".parse::<Nanos>(), Err(MoneyError::TooLarge));
        assert_eq!("0.0000000001".parse::<Nanos>(), Err(MoneyError::TooPrecise));
        for bad in ["", ".5", "5.", "-1", "+1", "1e3", "1,50", "$2", " 2", "1.2.3", "0x10", "١"] {
            assert_eq!(bad.parse::<Nanos>(), Err(MoneyError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn amounts_display_as_decimals() {
        assert_eq!(Nanos(2_500_000_000).to_string(), "2.50");
        assert_eq!(Nanos(75_000).to_string(), "0.000075");
        assert_eq!(Nanos(0).to_string(), "0.00");
        assert_eq!(Nanos(1).to_string(), "0.000000001");
        assert_eq!(Nanos::units(12).to_string(), "12.00");
        for s in ["2.50", "0.000075", "123.456789012"] {
            assert_eq!(s.parse::<Nanos>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn cached_tokens_are_charged_once_at_the_cached_price() {
        // gpt-4o-like: $2.50 input, $1.25 cached input, $10.00 output per 1M tokens.
        let price = ModelPrice::parse("2.50", Some("1.25"), "10.00").unwrap();
        let usage = TokenUsage { input_tokens: 1000, output_tokens: 200, total_tokens: 1200, cached_input_tokens: 600, reasoning_tokens: 50 };
        // 400 * 2500 + 600 * 1250 + 200 * 10000 nanos = 1_000_000 + 750_000 + 2_000_000.
        assert_eq!(price.cost(&usage), Nanos(3_750_000));
        // No cache: all input at the full price.
        assert_eq!(price.cost(&TokenUsage { cached_input_tokens: 0, ..usage }), Nanos(4_500_000));
        // A cached count above the input count cannot make the input cheaper than all-cached.
        assert_eq!(price.cost(&TokenUsage { cached_input_tokens: 5000, ..usage }), Nanos(3_250_000));
        // Without a cached price, cached tokens cost the input price.
        let flat = ModelPrice::parse("2.50", None, "10").unwrap();
        assert_eq!(flat.cost(&usage), Nanos(4_500_000));
        // The estimate ignores the cache.
        assert_eq!(price.estimate(1000, 200), Nanos(4_500_000));
    }

    #[test]
    fn fractions_of_a_nano_round_up_once() {
        // $0.0001 per 1M tokens = 0.1 nano per token.
        let price = ModelPrice::parse("0.0001", None, "0.0001").unwrap();
        let usage = TokenUsage { input_tokens: 3, output_tokens: 3, total_tokens: 6, ..TokenUsage::default() };
        assert_eq!(price.cost(&usage), Nanos(1));
        assert_eq!(price.cost(&TokenUsage::default()), Nanos(0));
        let huge = ModelPrice::parse("18446744073", None, "18446744073").unwrap();
        assert_eq!(huge.estimate(u64::MAX, u64::MAX), Nanos(u64::MAX));
    }

    #[test]
    fn price_table_prefers_exact_then_longest_prefix() {
        let mut table = PriceTable::new();
        table.insert("gpt-4o*", ModelPrice::parse("2.50", Some("1.25"), "10").unwrap());
        table.insert("gpt-4o-mini*", ModelPrice::parse("0.15", Some("0.075"), "0.60").unwrap());
        table.insert("gpt-4o-mini-special", ModelPrice::parse("1", None, "1").unwrap());
        let usage = TokenUsage { input_tokens: 1_000_000, output_tokens: 0, total_tokens: 1_000_000, ..TokenUsage::default() };
        assert_eq!(table.cost("gpt-4o-2024-08-06", &usage), Some(Nanos(2_500_000_000)));
        assert_eq!(table.cost("gpt-4o-mini", &usage), Some(Nanos(150_000_000)));
        assert_eq!(table.cost("gpt-4o-mini-special", &usage), Some(Nanos::units(1)));
        assert_eq!(table.cost("claude", &usage), None);
        assert_eq!(table.estimate("gpt-4o-mini", 1_000_000, 1_000_000), Some(Nanos(750_000_000)));
        let json = serde_json::to_string(&table).unwrap();
        assert_eq!(serde_json::from_str::<PriceTable>(&json).unwrap(), table);
    }
}
