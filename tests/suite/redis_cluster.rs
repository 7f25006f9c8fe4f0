//! The test harness's Redis Cluster (issue 15's first step): six nodes on
//! free loopback ports form a cluster of 3 masters with a replica each, and
//! a master that dies is replaced by its replica.

use crate::support;

use std::time::{Duration, Instant};

use support::redis_cluster::RedisCluster;

fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
}

#[test]
fn six_nodes_form_three_masters_with_a_replica_each() {
    let cluster = RedisCluster::start();
    for node in cluster.nodes() {
        let info = RedisCluster::info(node.port).expect("every node answers");
        assert_eq!(field(&info, "cluster_state"), Some("ok"), "{info}");
        assert_eq!(field(&info, "cluster_known_nodes"), Some("6"), "{info}");
        assert_eq!(field(&info, "cluster_size"), Some("3"), "{info}");
        assert_eq!(field(&info, "cluster_slots_assigned"), Some("16384"), "{info}");
    }
    assert_eq!(cluster.urls().len(), 6);
}

#[test]
fn a_killed_master_is_replaced_by_its_replica() {
    let cluster = RedisCluster::start();
    // `redis-cli --cluster create` makes the first three nodes the masters.
    let master = &cluster.nodes()[0];
    master.signal("KILL");
    let others: Vec<u16> = cluster.nodes()[1..].iter().map(|node| node.port).collect();
    let started = Instant::now();
    loop {
        let ok = others.iter().all(|&port| {
            RedisCluster::info(port).is_some_and(|info| field(&info, "cluster_state") == Some("ok"))
        });
        // Failed over once the others agree the cluster is whole again after
        // having noticed the loss (the node timeout is 1 s).
        if ok && started.elapsed() > support::redis_cluster::NODE_TIMEOUT * 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no failover within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
