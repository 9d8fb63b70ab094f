//! Socket options for herd's MQTT sessions.

/// Status reports and desired-state messages are small and latency-bound: without
/// `TCP_NODELAY`, Nagle holds a report while the previous segment waits for the peer's delayed
/// ACK (~40 ms on Linux), so reports arrived in pairs, one of them late.
pub fn tune(eventloop: &mut rumqttc::EventLoop) {
    let mut net = eventloop.network_options();
    net.set_tcp_nodelay(true);
    eventloop.set_network_options(net);
}
