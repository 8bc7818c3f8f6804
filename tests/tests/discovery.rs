//! Gateway discovery (v1.2 §6.1) on a discovery address the test owns (127.0.0.1:PORT):
//! ADVERTISE once the broker connects, GWINFO in answer to SEARCHGW, nothing while the broker
//! is down.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use sn_codec::v12::{Advertise, GwInfo, Packet};
use sn_tests::{ConnectOptions, Gateway, Mosquitto, Mote, ReturnCode};
use tokio::net::UdpSocket;

/// The next datagram at the discovery socket, with its sender; `None` after `timeout`.
async fn next_discovery(socket: &UdpSocket, timeout: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = vec![0u8; 2048];
    let (len, from) = tokio::time::timeout(timeout, socket.recv_from(&mut buf))
        .await
        .ok()?
        .expect("receive on the discovery socket");
    buf.truncate(len);
    Some((buf, from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertise_when_the_broker_connects_and_gwinfo_for_searchgw() {
    // The broker's port is chosen now and bound only later, when mosquitto starts: if another
    // process takes it in between, the whole scenario runs again on a new port (mosquitto
    // says "Address already in use"; any other start failure fails the test).
    let mut attempts = 0;
    let (discovery, _broker, gateway, mut mote) = loop {
        attempts += 1;
        assert!(attempts <= 5, "five broker ports in a row were taken");
        let discovery = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let mut broker = Mosquitto::new();
        let gateway = Gateway::builder(broker.port())
            .discovery(discovery.local_addr().unwrap())
            .gw_id(7)
            .advertise_interval(Duration::from_secs(60))
            .start()
            .await;

        // Broker down: no GWINFO for a SEARCHGW, and no ADVERTISE. The CONNACK 0x01 that
        // follows the SEARCHGW shows the gateway has handled it (datagrams are handled in
        // order).
        let mut mote = Mote::new(gateway.addr(), "searcher").await;
        mote.search_gw(0).await;
        assert_eq!(
            mote.connect_with(&ConnectOptions::default()).await,
            ReturnCode::Congestion
        );
        let mut buf = [0u8; 64];
        let early = discovery.try_recv_from(&mut buf);
        assert!(
            early.is_err(),
            "discovery traffic while the broker is down: {:02x?}",
            early.map(|(n, _)| buf[..n].to_vec())
        );

        if broker.start_unless_port_taken().await {
            break (discovery, broker, gateway, mote);
        }
        println!(
            "broker port {} was taken by another process: new port",
            broker.port()
        );
        gateway.shutdown().await;
    };
    let (datagram, from) = next_discovery(&discovery, Duration::from_secs(10))
        .await
        .expect("an ADVERTISE within 10 s of the broker starting");
    assert_eq!(from, gateway.addr());
    assert_eq!(
        Packet::decode(&datagram).unwrap(),
        Packet::Advertise(Advertise {
            gw_id: 7,
            duration: 60
        })
    );

    mote.search_gw(0).await;
    let (datagram, from) = next_discovery(&discovery, Duration::from_secs(10))
        .await
        .expect("a GWINFO within 10 s of SEARCHGW");
    assert_eq!(from, gateway.addr());
    assert_eq!(
        Packet::decode(&datagram).unwrap(),
        Packet::GwInfo(GwInfo {
            gw_id: 7,
            gw_add: &[]
        })
    );
    // The searcher can now connect.
    mote.connect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn advertise_again_after_a_broker_restart() {
    let discovery = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let mut broker = Mosquitto::running().await;
    let gateway = Gateway::builder(broker.port())
        .discovery(discovery.local_addr().unwrap())
        .gw_id(9)
        .advertise_interval(Duration::from_secs(60))
        .start()
        .await;
    let (datagram, _) = next_discovery(&discovery, Duration::from_secs(10))
        .await
        .expect("an ADVERTISE when the broker connects");
    assert!(matches!(
        Packet::decode(&datagram),
        Ok(Packet::Advertise(Advertise { gw_id: 9, .. }))
    ));

    broker.stop().await;
    broker.start().await;
    let (datagram, from) = next_discovery(&discovery, Duration::from_secs(10))
        .await
        .expect("an ADVERTISE when the broker connects again");
    assert_eq!(from, gateway.addr());
    assert!(matches!(
        Packet::decode(&datagram),
        Ok(Packet::Advertise(Advertise {
            gw_id: 9,
            duration: 60
        }))
    ));
}
