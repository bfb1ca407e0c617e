//! The client-matching table of SPEC §5, as a pure function of what the database knows.
//!
//! The store gathers the facts (the card with the record's external id, the card with its
//! phone, where else the phone is or was used) and carries out the decision; the table
//! itself lives here, once, for every backend.

use crate::error::Code;

/// The Russian messages of the seed for the two refusals; users and their support know them.
pub const PHONE_TAKEN_MESSAGE: &str =
    "Невозможно изменить номер телефона, так как клиент уже выполнил вход в личный кабинет";
pub const PHONE_IN_OTHER_ORGANIZATION_MESSAGE: &str = "Невозможно изменить номер телефона клиента, так как он зарегистрирован в нескольких организациях";

/// The part of a card the table looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub id: i64,
    pub phone: Option<String>,
    pub logged_in: bool,
}

/// What the database knows about a client record with phone `P` (normalised, if any).
#[derive(Debug, Clone, Default)]
pub struct Facts {
    /// A: the card of the organization with the record's external id.
    pub by_external_id: Option<Card>,
    /// B: a card of the organization, other than A, whose phone is P.
    pub by_phone: Option<Card>,
    /// P is the phone of a card in another organization.
    pub phone_in_other_organization: bool,
    /// P is in the organization's phone history (phones cards had before) of a card other than A.
    pub phone_in_history_of_another_card: bool,
}

impl Facts {
    /// Whether the costlier facts (other organizations, history) matter for this record:
    /// only when the record would change the phone of an existing card.
    pub fn phone_change(a: Option<&Card>, phone: Option<&str>) -> bool {
        matches!((a, phone), (Some(a), Some(p)) if a.phone.as_deref() != Some(p))
    }
}

/// The table's answer, named after its cases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 4: no A, no B.
    Create,
    /// 3: no A, B exists: the record's external id joins B.
    AddExternalId { card: i64 },
    /// 1: the phone is absent or the same: overwrite the fields, keep phone and ids.
    Update { card: i64 },
    /// 2a: a new phone unused in the organization: overwrite, the old phone goes to history.
    ChangePhone { card: i64 },
    /// 2d: B has the phone and never logged in: B is glued into A.
    Merge { winner: i64, loser: i64 },
    /// 2b, 2c.
    Refuse { code: Code, message: &'static str },
}

/// SPEC §5, checked in the table's order.
pub fn decide(phone: Option<&str>, facts: &Facts) -> Decision {
    let Some(a) = &facts.by_external_id else {
        return match &facts.by_phone {
            None => Decision::Create,
            Some(b) => Decision::AddExternalId { card: b.id },
        };
    };
    let Some(p) = phone else {
        return Decision::Update { card: a.id };
    };
    if a.phone.as_deref() == Some(p) {
        return Decision::Update { card: a.id };
    }
    if facts.phone_in_other_organization {
        return Decision::Refuse {
            code: Code::PhoneInOtherOrganization,
            message: PHONE_IN_OTHER_ORGANIZATION_MESSAGE,
        };
    }
    let b_logged_in = facts.by_phone.as_ref().is_some_and(|b| b.logged_in);
    if b_logged_in || facts.phone_in_history_of_another_card {
        return Decision::Refuse {
            code: Code::PhoneTaken,
            message: PHONE_TAKEN_MESSAGE,
        };
    }
    match &facts.by_phone {
        Some(b) => Decision::Merge {
            winner: a.id,
            loser: b.id,
        },
        None => Decision::ChangePhone { card: a.id },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(id: i64, phone: Option<&str>, logged_in: bool) -> Card {
        Card {
            id,
            phone: phone.map(str::to_owned),
            logged_in,
        }
    }

    const P: &str = "+79123456789";
    const Q: &str = "+79990000000";

    #[test]
    fn case_4_creates() {
        assert_eq!(decide(Some(P), &Facts::default()), Decision::Create);
        assert_eq!(decide(None, &Facts::default()), Decision::Create);
        // Another organization's use of the phone does not matter for a new card.
        let facts = Facts {
            phone_in_other_organization: true,
            ..Facts::default()
        };
        assert_eq!(decide(Some(P), &facts), Decision::Create);
    }

    #[test]
    fn case_3_adds_the_external_id() {
        let facts = Facts {
            by_phone: Some(card(7, Some(P), true)),
            ..Facts::default()
        };
        assert_eq!(decide(Some(P), &facts), Decision::AddExternalId { card: 7 });
    }

    #[test]
    fn case_1_updates_when_the_phone_is_the_same_or_absent() {
        let facts = Facts {
            by_external_id: Some(card(1, Some(P), false)),
            ..Facts::default()
        };
        assert_eq!(decide(Some(P), &facts), Decision::Update { card: 1 });
        assert_eq!(decide(None, &facts), Decision::Update { card: 1 });
    }

    #[test]
    fn case_2c_refuses_a_phone_of_another_organization_first() {
        let facts = Facts {
            by_external_id: Some(card(1, Some(Q), false)),
            by_phone: Some(card(2, Some(P), true)),
            phone_in_other_organization: true,
            phone_in_history_of_another_card: true,
        };
        assert!(matches!(
            decide(Some(P), &facts),
            Decision::Refuse {
                code: Code::PhoneInOtherOrganization,
                ..
            }
        ));
    }

    #[test]
    fn case_2b_refuses_a_logged_in_owner_or_a_past_owner() {
        let logged_in = Facts {
            by_external_id: Some(card(1, Some(Q), false)),
            by_phone: Some(card(2, Some(P), true)),
            ..Facts::default()
        };
        assert!(matches!(
            decide(Some(P), &logged_in),
            Decision::Refuse {
                code: Code::PhoneTaken,
                ..
            }
        ));
        let in_history = Facts {
            by_external_id: Some(card(1, Some(Q), false)),
            phone_in_history_of_another_card: true,
            ..Facts::default()
        };
        assert!(matches!(
            decide(Some(P), &in_history),
            Decision::Refuse {
                code: Code::PhoneTaken,
                ..
            }
        ));
    }

    #[test]
    fn case_2d_merges_a_card_that_never_logged_in() {
        let facts = Facts {
            by_external_id: Some(card(1, Some(Q), true)),
            by_phone: Some(card(2, Some(P), false)),
            ..Facts::default()
        };
        assert_eq!(
            decide(Some(P), &facts),
            Decision::Merge {
                winner: 1,
                loser: 2
            }
        );
    }

    #[test]
    fn case_2a_changes_the_phone() {
        let facts = Facts {
            by_external_id: Some(card(1, Some(Q), true)),
            ..Facts::default()
        };
        assert_eq!(decide(Some(P), &facts), Decision::ChangePhone { card: 1 });
        let no_phone_yet = Facts {
            by_external_id: Some(card(1, None, false)),
            ..Facts::default()
        };
        assert_eq!(
            decide(Some(P), &no_phone_yet),
            Decision::ChangePhone { card: 1 }
        );
    }
}
