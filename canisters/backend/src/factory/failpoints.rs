//! Named fault sites before and after every side effect of every stage (cargo feature `failpoints`).
//! Without the feature `hit` is an empty function and no failpoint method exists.

/// Every site, in stage order.
pub const SITES: &[&str] = &[
    "export.before",
    "export.after",
    "create.before",
    "create.after",
    "install.before",
    "install.after",
    "version.before",
    "import.begin",
    "import.chunk",
    "import.batch",
    "import.connections",
    "import.finalize",
    "verify.before",
    "handoff.before",
    "handoff.after",
    "runway.before",
];

#[cfg(not(feature = "failpoints"))]
pub async fn hit(_site: &str) -> super::api::FactoryResult<()> {
    Ok(())
}

#[cfg(feature = "failpoints")]
pub use armed::*;

#[cfg(feature = "failpoints")]
mod armed {
    use super::super::api::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    struct Armed {
        action: FailpointAction,
        /// Hits to let pass before firing.
        skip: u32,
        times: u32,
    }

    thread_local! {
        static ARMED: RefCell<BTreeMap<String, Armed>> = const { RefCell::new(BTreeMap::new()) };
    }

    pub fn arm(req: FailpointArm) -> FactoryResult<()> {
        if !super::SITES.contains(&req.name.as_str()) {
            let reason = format!("unknown site; known: {}", super::SITES.join(", "));
            return Err(FactoryError::new(
                FactoryErrorKind::InvalidConfig {
                    field: "name".into(),
                    reason: reason.clone(),
                },
                reason,
            ));
        }
        if req.nth == 0 {
            let reason = "nth counts from 1".to_string();
            return Err(FactoryError::new(
                FactoryErrorKind::InvalidConfig {
                    field: "nth".into(),
                    reason: reason.clone(),
                },
                reason,
            ));
        }
        let armed = Armed {
            action: req.action,
            skip: req.nth - 1,
            times: req.times.unwrap_or(1).max(1),
        };
        ARMED.with(|a| a.borrow_mut().insert(req.name, armed));
        Ok(())
    }

    pub fn clear() {
        ARMED.with(|a| a.borrow_mut().clear());
    }

    pub fn list() -> Vec<String> {
        ARMED.with(|a| a.borrow().keys().cloned().collect())
    }

    fn take(site: &str) -> Option<FailpointAction> {
        ARMED.with(|a| {
            let mut a = a.borrow_mut();
            let armed = a.get_mut(site)?;
            if armed.skip > 0 {
                armed.skip -= 1;
                return None;
            }
            armed.times -= 1;
            let action = armed.action.clone();
            if armed.times == 0 {
                a.remove(site);
            }
            Some(action)
        })
    }

    /// Fires the site if armed. A trap first commits the disarm with a self-call (a trap rolls back
    /// the whole message, so otherwise the same failpoint would fire again forever), then traps.
    pub async fn hit(site: &str) -> FactoryResult<()> {
        match take(site) {
            None => Ok(()),
            Some(FailpointAction::Error) => Err(FactoryError::new(
                FactoryErrorKind::Failpoint { name: site.into() },
                format!("failpoint {site} fired"),
            )),
            Some(FailpointAction::Trap) => {
                let _ = ic_cdk::call::Call::bounded_wait(
                    ic_cdk::api::canister_self(),
                    "failpoint_commit",
                )
                .await;
                ic_cdk::trap(format!("failpoint {site} fired: trapping"));
            }
        }
    }
}
