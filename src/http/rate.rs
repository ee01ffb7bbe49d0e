//! Request budgets for the HTTP routes (see [`crate::budget`]). The routes that
//! cost something (a new conversation, a message through the matcher, a text
//! message sent, a password check) say which budget they spend; a request over
//! budget gets 429 with a reason and `Retry-After`.

pub use crate::budget::{Budget, Over};

use super::ApiError;
use crate::config::Rates;

impl From<Over> for ApiError {
    fn from(o: Over) -> Self {
        ApiError::too_many(format!("too many {}", o.what), o.wait)
    }
}

/// The budgets per client address for the public routes.
pub struct ClientBudgets {
    pub conversations: Budget,
    pub messages: Budget,
    pub codes: Budget,
    pub sign_ins: Budget,
}

impl ClientBudgets {
    pub fn new(r: Rates) -> Self {
        Self {
            conversations: Budget::per_minute(
                r.conversations,
                "new conversations from this address",
            ),
            messages: Budget::per_minute(r.messages, "messages from this address"),
            codes: Budget::per_hour(r.codes, "verification codes asked for from this address"),
            sign_ins: Budget::per_minute(r.sign_ins, "sign-in attempts from this address"),
        }
    }
}

/// Which budget a route spends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spend {
    Conversation,
    Message,
    Code,
    SignIn,
}

impl ClientBudgets {
    pub fn spend(&self, what: Spend, client: std::net::IpAddr) -> Result<(), ApiError> {
        match what {
            Spend::Conversation => self.conversations.spend(&client),
            Spend::Message => self.messages.spend(&client),
            Spend::Code => self.codes.spend(&client),
            Spend::SignIn => self.sign_ins.spend(&client),
        }
        .map_err(ApiError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spend_over_budget_is_a_429_with_the_wait() {
        let b: Budget = Budget::per_minute(1, "things");
        let me: std::net::IpAddr = "192.0.2.1".parse().unwrap();
        assert!(b.spend(&me).is_ok());
        let e = ApiError::from(b.spend(&me).unwrap_err());
        assert_eq!(e.status, axum::http::StatusCode::TOO_MANY_REQUESTS);
        assert!(e.reason.starts_with("too many things"), "{}", e.reason);
        assert!((1..=60).contains(&e.retry_after.unwrap()), "{e:?}");
    }

    #[test]
    fn per_hour_budgets_refill_slowly() {
        let b: Budget<String> = Budget::per_hour(2, "codes to this number");
        let n = "+8613800138000".to_string();
        assert!(b.spend(&n).is_ok() && b.spend(&n).is_ok());
        let e = ApiError::from(b.spend(&n).unwrap_err());
        assert!(e.retry_after.unwrap() > 1000, "{e:?}");
    }
}
