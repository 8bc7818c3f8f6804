#![allow(clippy::unwrap_used)]
use super::*;
use crate::peer::{LinkId, Peer, PeerAddr, RadioAddr};

fn udp(link: u16, text: &str) -> ClientAddr {
    ClientAddr {
        peer: Peer {
            link: LinkId(link),
            addr: PeerAddr::Ip(text.parse().unwrap()),
        },
        node: None,
    }
}

fn listed(entries: Vec<MoteEntry>) -> PolicyConfig {
    PolicyConfig {
        admission: Admission::Listed,
        motes: entries,
        ..PolicyConfig::default()
    }
}

#[test]
fn open_admits_anyone_to_everything_but_dollar_topics() {
    let policy = Policy::new(&PolicyConfig::default(), false);
    let grant = policy.admit("anyone", &udp(0, "1.2.3.4:5"), None).unwrap();
    assert!(!grant.listed());
    assert!(!grant.bound());
    assert_eq!(grant.may_publish("a/b"), Ok(()));
    assert_eq!(grant.may_subscribe("#"), Ok(()));
    assert_eq!(
        grant.may_publish("$SYS/broker/fake"),
        Err(Denied::DollarTopic)
    );
    assert_eq!(grant.may_subscribe("$SYS/#"), Err(Denied::DollarTopic));
    assert_eq!(grant.may_register("$SYS/x"), Err(Denied::DollarTopic));
    assert_eq!(policy.minus_one(&udp(0, "1.2.3.4:5"), "ab"), Ok(()));
    assert_eq!(
        policy.minus_one(&udp(0, "1.2.3.4:5"), "$SYS/x"),
        Err(Denied::DollarTopic)
    );
}

#[test]
fn listed_admits_only_entries_from_where_they_are_bound() {
    let mut bound = MoteEntry::new("mote-*");
    bound.addresses = vec![AddrPattern::parse("10.0.0.0/24").unwrap()];
    bound.link = Some(LinkId(1));
    let mut radio = MoteEntry::new("radio-1");
    radio.addresses = vec![AddrPattern::parse("xbee:0013a20041a7b3c1").unwrap()];
    let policy = Policy::new(&listed(vec![bound, radio]), false);

    let grant = policy
        .admit("mote-7", &udp(1, "10.0.0.9:4000"), None)
        .unwrap();
    assert!(grant.listed() && grant.bound());
    assert_eq!(
        policy
            .admit("mote-7", &udp(0, "10.0.0.9:4000"), None)
            .unwrap_err(),
        Denied::WrongLink
    );
    assert_eq!(
        policy
            .admit("mote-7", &udp(1, "10.0.1.9:4000"), None)
            .unwrap_err(),
        Denied::WrongAddress
    );
    assert_eq!(
        policy
            .admit("other", &udp(1, "10.0.0.9:4000"), None)
            .unwrap_err(),
        Denied::NotListed
    );
    let xbee = ClientAddr {
        peer: Peer {
            link: LinkId(2),
            addr: PeerAddr::Radio(RadioAddr::XBee(0x0013_a200_41a7_b3c1)),
        },
        node: None,
    };
    assert!(policy.admit("radio-1", &xbee, None).is_ok());
    assert_eq!(
        policy
            .admit("radio-1", &udp(2, "10.0.0.9:1"), None)
            .unwrap_err(),
        Denied::WrongAddress
    );
    // Under listed admission, QoS -1 needs its own rules.
    assert_eq!(
        policy.minus_one(&udp(0, "10.0.0.9:1"), "ab"),
        Err(Denied::MinusOneTopic)
    );
}

#[test]
fn the_first_matching_entry_decides() {
    let mut exact = MoteEntry::new("mote-1");
    exact.rules.publish = vec!["only/this".into()];
    let mut rest = MoteEntry::new("mote-*");
    rest.rules.publish = vec!["#".into()];
    let policy = Policy::new(&listed(vec![exact, rest]), false);
    let one = policy.grant_for("mote-1", None).unwrap();
    assert_eq!(one.may_publish("other"), Err(Denied::Publish));
    assert_eq!(
        policy
            .grant_for("mote-2", None)
            .unwrap()
            .may_publish("other"),
        Ok(())
    );
}

#[test]
fn open_admission_still_binds_listed_motes() {
    let mut entry = MoteEntry::new("boiler");
    entry.addresses = vec![AddrPattern::parse("192.168.1.50").unwrap()];
    let config = PolicyConfig {
        motes: vec![entry],
        ..PolicyConfig::default()
    };
    let policy = Policy::new(&config, false);
    assert!(policy
        .admit("boiler", &udp(0, "192.168.1.50:1"), None)
        .unwrap()
        .listed());
    assert_eq!(
        policy
            .admit("boiler", &udp(0, "192.168.1.51:1"), None)
            .unwrap_err(),
        Denied::WrongAddress
    );
    assert!(!policy
        .admit("guest", &udp(0, "192.168.1.51:1"), None)
        .unwrap()
        .listed());
}

#[test]
fn client_id_and_mountpoint_confine_each_mote() {
    let mut entry = MoteEntry::new("*");
    entry.rules = TopicRules {
        publish: vec!["sensors/%c/#".into()],
        subscribe: vec!["commands/%c/+".into()],
        mountpoint: Some("site/%c/".into()),
    };
    let policy = Policy::new(&listed(vec![entry]), true);
    let grant = policy.grant_for("m1", None).unwrap();
    assert!(grant.roaming());
    assert_eq!(grant.may_publish("sensors/m1/t"), Ok(()));
    assert_eq!(grant.may_publish("sensors/m2/t"), Err(Denied::Publish));
    assert_eq!(grant.may_subscribe("commands/m1/+"), Ok(()));
    assert_eq!(grant.may_subscribe("commands/m1/#"), Err(Denied::Subscribe));
    assert_eq!(grant.may_subscribe("commands/+/x"), Err(Denied::Subscribe));
    assert_eq!(grant.may_register("commands/m1/x"), Ok(()));
    assert_eq!(grant.may_register("elsewhere"), Err(Denied::Register));
    let mounted = grant.mount(Arc::from("sensors/m1/t"));
    assert_eq!(&*mounted, "site/m1/sensors/m1/t");
    assert_eq!(grant.unmount(&mounted).as_deref(), Some("sensors/m1/t"));
    assert_eq!(grant.unmount(&Arc::from("site/m2/x")), None);
    // An id that would widen its rules or escape its mountpoint is refused.
    assert_eq!(
        policy.grant_for("a/b", None).unwrap_err(),
        Denied::UnusableClientId
    );
    assert_eq!(
        policy.grant_for("#", None).unwrap_err(),
        Denied::UnusableClientId
    );
}

#[test]
fn minus_one_rules_and_sources() {
    let config = PolicyConfig {
        minus_one: MinusOneRules {
            publish: Some(vec!["beacons/+".into()]),
            from: vec![AddrPattern::parse("10.1.0.0/16").unwrap()],
        },
        ..PolicyConfig::default()
    };
    let policy = Policy::new(&config, false);
    assert_eq!(policy.minus_one(&udp(0, "10.1.2.3:1"), "beacons/x"), Ok(()));
    assert_eq!(
        policy.minus_one(&udp(0, "10.1.2.3:1"), "other"),
        Err(Denied::MinusOneTopic)
    );
    assert_eq!(
        policy.minus_one(&udp(0, "10.2.2.3:1"), "beacons/x"),
        Err(Denied::MinusOneAddress)
    );
}

#[test]
fn a_mountpoint_always_ends_with_a_slash() {
    assert!(check_mountpoint("site/%c").is_err());
    assert!(check_mountpoint("site/%c/").is_ok());
    assert!(check_mountpoint("").is_ok());
    let config = PolicyConfig {
        rules: TopicRules {
            mountpoint: Some("site/%c".into()),
            ..TopicRules::default()
        },
        ..PolicyConfig::default()
    };
    let policy = Policy::new(&config, false);
    let grant = policy.grant_for("m-1", None).unwrap();
    assert_eq!(&*grant.mount(Arc::from("#")), "site/m-1/#");
    assert_eq!(grant.unmount(&Arc::from("site/m-10/cmd")), None);
}

#[test]
fn grants_without_client_id_are_shared() {
    let policy = Policy::new(&PolicyConfig::default(), false);
    let a = policy.grant_for("a", None).unwrap();
    let b = policy.grant_for("b", None).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
}

#[test]
fn an_authenticated_identity_speaks_for_its_own_client_id_or_its_entrys() {
    let mut named = MoteEntry::new("valve-*");
    named.identity = Some("valve-psk".into());
    let mut plain = MoteEntry::new("boiler");
    plain.addresses = vec![AddrPattern::parse("10.0.0.0/8").unwrap()];
    let policy = Policy::new(&listed(vec![named, plain]), false);
    let at = udp(3, "10.0.0.9:5684");
    // The entry naming the identity: its client ids, and only over the authenticated link.
    let grant = policy.admit("valve-2", &at, Some("valve-psk")).unwrap();
    assert!(grant.listed() && grant.bound());
    assert_eq!(
        policy.admit("boiler", &at, Some("valve-psk")).unwrap_err(),
        Denied::IdentityMismatch
    );
    assert_eq!(
        policy.admit("valve-2", &at, None).unwrap_err(),
        Denied::NotAuthenticated
    );
    assert_eq!(
        policy.admit("valve-2", &at, Some("other")).unwrap_err(),
        Denied::IdentityMismatch
    );
    // No entry names the identity: it speaks for the client id equal to it.
    assert!(policy.admit("boiler", &at, Some("boiler")).is_ok());
    assert_eq!(
        policy.admit("boiler", &at, Some("intruder")).unwrap_err(),
        Denied::IdentityMismatch
    );
}
