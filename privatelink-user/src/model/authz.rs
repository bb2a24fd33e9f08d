//! Authorization: one function of (caller, action, resource) that every tenant API
//! route calls. An account sees and changes only what is its own; a provider decides
//! on the connections to its services; a consumer sees a service (as the consoles'
//! "available services" list shows it) only when the service's whitelist names it or
//! says `*`. What a caller may not see is `Hidden` (404: its existence is not
//! revealed); what it sees but may not do is `Forbidden` (403). Pure and table-tested.

use super::spec::Account;

/// Who is asking (from a verified token).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// An operator token: acts for every account.
    Operator { read_only: bool },
    Account { id: String, read_only: bool },
}

/// What is asked of a resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Everything about it (an owner's view).
    Read,
    /// What a consumer may know of a service it may connect to.
    Browse,
    /// Change or delete it; for a VPC, create something in it.
    Write,
    /// Accept or reject a connection (an endpoint to one's service).
    Decide,
}

/// The facts about a resource the rules look at.
#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    Service { owner: &'a str, allowed: &'a [Account] },
    /// An endpoint, with the owner of the service it connects to (None: gone).
    Endpoint { owner: &'a str, service_owner: Option<&'a str> },
    /// A VPC (owner None: the operator's alone).
    Vpc { owner: Option<&'a str> },
    /// A security group: its owner's alone.
    Group { owner: &'a str },
    /// The gateway as a whole (its nodes, every VPC's drops, every event): the
    /// operator's alone, hidden from every account.
    Fleet,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// 403: the caller sees it but may not do this (a read-only token's write too).
    Forbidden,
    /// 404: as if it did not exist.
    Hidden,
}

/// Whether a service's whitelist lets `account` connect (`*`: everyone; the owner
/// always).
pub fn may_connect(owner: &str, allowed: &[Account], account: &str) -> bool {
    owner == account || allowed.iter().any(|a| a.0 == "*" || a.0 == account)
}

/// The one authorization rule.
pub fn decide(caller: &Caller, action: Action, subject: Subject<'_>) -> Decision {
    let (me, read_only) = match caller {
        Caller::Operator { read_only } => return if *read_only && writes(action) { Decision::Forbidden } else { Decision::Allow },
        Caller::Account { id, read_only } => (id.as_str(), *read_only),
    };
    // What the caller may do to it at most, and whether it may know it exists.
    let (may, sees): (bool, bool) = match subject {
        Subject::Service { owner, allowed } => {
            let own = owner == me;
            let browse = may_connect(owner, allowed, me);
            let may = match action {
                Action::Browse => browse,
                Action::Read | Action::Write => own,
                Action::Decide => false,
            };
            (may, browse)
        }
        Subject::Endpoint { owner, service_owner } => {
            let (own, provides) = (owner == me, service_owner == Some(me));
            let may = match action {
                Action::Read => own || provides,
                Action::Browse => false,
                Action::Write => own,
                Action::Decide => provides,
            };
            (may, own || provides)
        }
        Subject::Vpc { owner } => {
            let own = owner == Some(me);
            (own && action != Action::Decide, own)
        }
        Subject::Group { owner } => {
            let own = owner == me;
            (own && matches!(action, Action::Read | Action::Write), own)
        }
        Subject::Fleet => (false, false),
    };
    match (sees, may) {
        (false, _) => Decision::Hidden,
        (true, true) if read_only && writes(action) => Decision::Forbidden,
        (true, true) => Decision::Allow,
        (true, false) => Decision::Forbidden,
    }
}

fn writes(action: Action) -> bool {
    matches!(action, Action::Write | Action::Decide)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NAMES: [&str; 3] = ["100001", "100002", "100003"];

    fn account() -> impl Strategy<Value = String> {
        prop::sample::select(&NAMES[..]).prop_map(str::to_string)
    }

    fn caller() -> impl Strategy<Value = Caller> {
        prop_oneof![
            1 => any::<bool>().prop_map(|read_only| Caller::Operator { read_only }),
            6 => (account(), any::<bool>()).prop_map(|(id, read_only)| Caller::Account { id, read_only }),
        ]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop::sample::select(vec![Action::Read, Action::Browse, Action::Write, Action::Decide])
    }

    /// A whitelist: some of the accounts, and maybe `*`.
    fn allowed() -> impl Strategy<Value = Vec<Account>> {
        prop::collection::vec(prop_oneof![account(), Just("*".to_string())], 0..3).prop_map(|v| v.into_iter().map(Account).collect())
    }

    /// The rules, restated as what must never happen, for each kind of resource.
    fn check(c: &Caller, a: Action, s: Subject<'_>, d: Decision) -> Result<(), TestCaseError> {
        let (me, ro) = match c {
            Caller::Operator { read_only } => {
                prop_assert_eq!(d == Decision::Allow, !(*read_only && writes(a)));
                return Ok(());
            }
            Caller::Account { id, read_only } => (id.as_str(), *read_only),
        };
        if ro && writes(a) {
            prop_assert_ne!(d, Decision::Allow, "a read-only token wrote");
        }
        let (owns, provides, listed) = match s {
            Subject::Service { owner, allowed } => (owner == me, false, allowed.iter().any(|x| x.0 == "*" || x.0 == me)),
            Subject::Endpoint { owner, service_owner } => (owner == me, service_owner == Some(me), false),
            Subject::Vpc { owner } => (owner == Some(me), false, false),
            Subject::Group { owner } => (owner == me, false, false),
            Subject::Fleet => (false, false, false),
        };
        let visible = owns || provides || listed;
        if !visible {
            prop_assert_eq!(d, Decision::Hidden, "a resource neither owned, provided to nor listed for the caller was revealed");
        }
        if d == Decision::Allow {
            match (s, a) {
                (Subject::Service { .. }, Action::Browse) => prop_assert!(owns || listed),
                (Subject::Service { .. }, Action::Read | Action::Write) => prop_assert!(owns, "only its owner reads or changes a service whole"),
                (Subject::Endpoint { .. }, Action::Read) => prop_assert!(owns || provides),
                (Subject::Endpoint { .. }, Action::Write) => prop_assert!(owns, "only its owner changes an endpoint"),
                (Subject::Endpoint { .. }, Action::Decide) => prop_assert!(provides, "only the service's owner decides a connection"),
                (Subject::Vpc { .. }, _) => prop_assert!(owns),
                (Subject::Group { .. }, Action::Read | Action::Write) => prop_assert!(owns, "only its owner reads or changes a security group"),
                (_, _) => prop_assert!(false, "{a:?} allowed on {s:?}"),
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn no_request_succeeds_on_what_its_account_does_not_own_or_may_not_see(
            c in caller(), a in action(), owner in account(), other in account(), list in allowed(), vpc_owner in prop::option::of(account()), kind in 0..5u8,
        ) {
            let s = match kind {
                0 => Subject::Service { owner: &owner, allowed: &list },
                1 => Subject::Endpoint { owner: &owner, service_owner: Some(&other) },
                2 => Subject::Vpc { owner: vpc_owner.as_deref() },
                3 => Subject::Group { owner: &owner },
                _ => Subject::Fleet,
            };
            check(&c, a, s, decide(&c, a, s))?;
        }
    }

    #[test]
    fn the_seeds_cases() {
        let (p, c, x) = ("100002", "100001", "100003");
        let acct = |id: &str| Caller::Account { id: id.into(), read_only: false };
        let list = [Account(c.into())];
        let svc = Subject::Service { owner: p, allowed: &list };
        let ep = Subject::Endpoint { owner: c, service_owner: Some(p) };
        assert_eq!(decide(&acct(c), Action::Browse, svc), Decision::Allow, "a whitelisted consumer sees the service");
        assert_eq!(decide(&acct(c), Action::Read, svc), Decision::Forbidden, "but not as its owner");
        assert_eq!(decide(&acct(x), Action::Browse, svc), Decision::Hidden, "an account not whitelisted does not");
        assert_eq!(decide(&acct(p), Action::Decide, ep), Decision::Allow, "the provider accepts");
        assert_eq!(decide(&acct(c), Action::Decide, ep), Decision::Forbidden, "a consumer cannot accept its own endpoint");
        assert_eq!(decide(&acct(x), Action::Decide, ep), Decision::Hidden);
        assert_eq!(decide(&Caller::Account { id: p.into(), read_only: true }, Action::Decide, ep), Decision::Forbidden, "read-only");
        let same = Subject::Endpoint { owner: p, service_owner: Some(p) };
        assert_eq!(decide(&acct(p), Action::Decide, same), Decision::Allow, "an account that provides and consumes decides its own");
    }
}
