//! `wsring bench` against a live dev cluster: every message sent is received
//! and the report says so.

mod common;

use common::procs::Proc;
use std::time::Duration;
use wsring_node::Routing;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_reports_what_it_measured() {
    let c = common::dev(2, common::common(Routing::Hash)).await;
    let gw = c.gateway_url();
    for (mode, extra) in [("direct", vec![]), ("room", vec!["--room-size", "5"])] {
        let mut args = vec![
            "bench",
            "--url",
            &gw,
            "--clients",
            "20",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--mode",
            mode,
        ];
        args.extend(extra);
        let (status, out) = Proc::run_stdout(&args, Duration::from_secs(60)).await;
        assert!(status.success(), "{out}");
        assert!(
            out.contains("| clients connected | 20 (0 failed) |"),
            "{out}"
        );
        let field = |name: &str| -> u64 {
            out.lines()
                .find(|l| l.starts_with(&format!("| {name} |")))
                .and_then(|l| l.split('|').nth(2))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {out}"))
        };
        let fanout = if mode == "room" { 5 } else { 1 };
        assert_eq!(field("sent"), 200, "{out}");
        assert_eq!(field("received"), 200 * fanout, "{out}");
    }
    c.shutdown().await;
}
