//! The chain of control, judged from what the management canister reports: since the factory created
//! the canister, nobody but the factory changed its code or its controllers, the factory still controls
//! it, and it runs the module the factory installed. The user co-controls the canister until the
//! handoff; what the canister says about itself proves nothing.

use super::api::{FactoryError, FactoryErrorKind};
use super::runtime::{CanisterFacts, ChangeWhat};
use candid::Principal;

/// What a check found, when it found nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// The factory controls the canister; every change up to `checked` was its own.
    Held { checked: u64 },
    /// The history shows the factory's own handoff to the user (a lost reply to `update_settings`
    /// included); what happened after it is the user's business.
    HandedOver,
}

/// Checks the changes after `checked` (a count of changes, as `total_num_changes`), the controllers and,
/// when one is pinned, the module hash.
pub fn check(
    facts: &CanisterFacts,
    factory: Principal,
    user: Principal,
    pinned: Option<&[u8]>,
    checked: u64,
) -> Result<Control, FactoryError> {
    let unseen = facts.total_changes.saturating_sub(checked);
    if unseen > facts.changes.len() as u64 {
        return Err(FactoryError::new(
            FactoryErrorKind::HistoryGap {
                checked,
                total: facts.total_changes,
            },
            format!(
                "{unseen} changes happened to the canister since the last check, more than its history keeps ({}); the chain of control cannot be proven",
                facts.changes.len()
            ),
        ));
    }
    let start = facts.changes.len() - unseen as usize;
    for change in &facts.changes[start..] {
        if change.by != factory {
            return Err(foreign(facts, change.by, &change.what, pinned));
        }
        if change.what == ChangeWhat::Controllers(vec![user]) {
            return Ok(Control::HandedOver);
        }
    }
    if !facts.controllers.contains(&factory) {
        return Err(control_lost(facts, None));
    }
    if let Some(pinned) = pinned {
        if facts.module_hash.as_deref() != Some(pinned) {
            return Err(module_changed(facts, pinned, None));
        }
    }
    Ok(Control::Held {
        checked: facts.total_changes,
    })
}

fn foreign(
    facts: &CanisterFacts,
    by: Principal,
    what: &ChangeWhat,
    pinned: Option<&[u8]>,
) -> FactoryError {
    match what {
        ChangeWhat::Controllers(_) => control_lost(facts, Some(by)),
        _ => module_changed(facts, pinned.unwrap_or_default(), Some(by)),
    }
}

fn control_lost(facts: &CanisterFacts, by: Option<Principal>) -> FactoryError {
    let who = by.map_or("someone".to_string(), |p| p.to_text());
    FactoryError::new(
        FactoryErrorKind::ControlLost {
            controllers: facts.controllers.clone(),
            by,
        },
        format!(
            "{who} changed the canister's controllers to {:?} before the handoff; the factory no longer vouches for it",
            facts.controllers.iter().map(|p| p.to_text()).collect::<Vec<_>>()
        ),
    )
}

fn module_changed(facts: &CanisterFacts, pinned: &[u8], by: Option<Principal>) -> FactoryError {
    let expected = (!pinned.is_empty()).then(|| hex::encode(pinned));
    let actual = facts.module_hash.as_ref().map(hex::encode);
    let message = match by {
        Some(by) => format!(
            "{} changed the canister's code before the handoff (module now {}); the factory no longer vouches for it",
            by.to_text(),
            actual.as_deref().unwrap_or("none")
        ),
        None => format!(
            "the canister runs module {} instead of the installed {}",
            actual.as_deref().unwrap_or("none"),
            expected.as_deref().unwrap_or("none")
        ),
    };
    FactoryError::new(
        FactoryErrorKind::ModuleChanged {
            expected,
            actual,
            by,
        },
        message,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factory::runtime::ChangeFact;

    fn p(n: u8) -> Principal {
        Principal::from_slice(&[n; 10])
    }
    const HASH: &[u8] = &[7; 32];

    fn facts(changes: Vec<(Principal, ChangeWhat)>, controllers: Vec<Principal>) -> CanisterFacts {
        CanisterFacts {
            module_hash: Some(HASH.to_vec()),
            controllers,
            total_changes: changes.len() as u64,
            changes: changes
                .into_iter()
                .map(|(by, what)| ChangeFact { by, what })
                .collect(),
        }
    }

    fn kind(r: Result<Control, FactoryError>) -> FactoryErrorKind {
        r.unwrap_err().kind
    }

    #[test]
    fn only_the_factory_changed_anything() {
        let (f, u) = (p(1), p(2));
        let f1 = facts(
            vec![(f, ChangeWhat::Created), (f, ChangeWhat::Code)],
            vec![f, u],
        );
        assert_eq!(
            check(&f1, f, u, Some(HASH), 0),
            Ok(Control::Held { checked: 2 })
        );
    }

    #[test]
    fn the_user_installing_code_is_named() {
        let (f, u) = (p(1), p(2));
        let f1 = facts(
            vec![
                (f, ChangeWhat::Created),
                (f, ChangeWhat::Code),
                (u, ChangeWhat::Code),
            ],
            vec![f, u],
        );
        assert!(matches!(
            kind(check(&f1, f, u, Some(HASH), 0)),
            FactoryErrorKind::ModuleChanged { by: Some(b), .. } if b == u
        ));
        // Already checked up to the user's change: still judged by the module hash.
        let mut f2 = f1.clone();
        f2.module_hash = Some(vec![9; 32]);
        assert!(matches!(
            kind(check(&f2, f, u, Some(HASH), 3)),
            FactoryErrorKind::ModuleChanged { by: None, .. }
        ));
    }

    #[test]
    fn the_user_removing_the_factory_is_control_lost() {
        let (f, u) = (p(1), p(2));
        let f1 = facts(
            vec![
                (f, ChangeWhat::Created),
                (u, ChangeWhat::Controllers(vec![u])),
            ],
            vec![u],
        );
        assert!(matches!(
            kind(check(&f1, f, u, None, 0)),
            FactoryErrorKind::ControlLost { by: Some(b), .. } if b == u
        ));
    }

    #[test]
    fn the_factorys_own_handoff_is_recognized_and_what_follows_is_the_users() {
        let (f, u) = (p(1), p(2));
        let mut f1 = facts(
            vec![
                (f, ChangeWhat::Created),
                (f, ChangeWhat::Code),
                (f, ChangeWhat::Controllers(vec![u])),
                (u, ChangeWhat::Code),
            ],
            vec![u],
        );
        f1.module_hash = Some(vec![9; 32]);
        assert_eq!(check(&f1, f, u, Some(HASH), 2), Ok(Control::HandedOver));
    }

    #[test]
    fn more_changes_than_history_keeps_is_a_gap() {
        let (f, u) = (p(1), p(2));
        let mut f1 = facts(vec![(f, ChangeWhat::Code); 20], vec![f, u]);
        f1.total_changes = 25;
        assert!(matches!(
            kind(check(&f1, f, u, Some(HASH), 2)),
            FactoryErrorKind::HistoryGap {
                checked: 2,
                total: 25
            }
        ));
        assert_eq!(
            check(&f1, f, u, Some(HASH), 5),
            Ok(Control::Held { checked: 25 })
        );
    }

    #[test]
    fn controllers_without_the_factory_and_no_history_of_it_is_control_lost() {
        let (f, u) = (p(1), p(2));
        let f1 = facts(vec![(f, ChangeWhat::Created)], vec![u, p(3)]);
        assert!(matches!(
            kind(check(&f1, f, u, None, 1)),
            FactoryErrorKind::ControlLost { by: None, .. }
        ));
    }
}
