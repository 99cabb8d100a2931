//! The /dev/kmsg logger: one write per record, the priority prefix, and the budget that
//! keeps a run under the kernel's rate limit while the summary always gets through.

mod kmsg_stand_in;

use kmsg_stand_in::{packet_pair, packets};
use log::{Level, LevelFilter};
use vfio_bind::boot::kmsg::{self, KMSG_RECORD_BUDGET};

#[test]
fn records_are_whole_prioritised_budgeted_and_the_summary_gets_through() {
    let (writer, reader) = packet_pair();
    kmsg::init_with_kmsg(writer, LevelFilter::Info);
    log::error!("skipped malformed rule \"{}\": {}", "zz", "why");
    log::warn!("a warning with {} parts", 2);
    log::info!("applied");
    log::debug!("not logged at the default level");
    for n in 0..10 {
        log::error!("flood {n}");
    }
    kmsg::log_summary(
        Level::Error,
        format_args!("0 of 1 rules applied, {} held back", kmsg::held_back()),
    );
    let records = packets(&reader);
    assert_eq!(records.len(), KMSG_RECORD_BUDGET + 1, "{records:?}");
    assert_eq!(
        records[0],
        "<3>vfio-bind: skipped malformed rule \"zz\": why\n"
    );
    assert_eq!(records[1], "<4>vfio-bind: a warning with 2 parts\n");
    assert_eq!(records[2], "<6>vfio-bind: applied\n");
    assert_eq!(records[3], "<3>vfio-bind: flood 0\n");
    let held_back = 3 + 10 - KMSG_RECORD_BUDGET;
    assert_eq!(
        records.last().unwrap(),
        &format!("<3>vfio-bind: 0 of 1 rules applied, {held_back} held back\n")
    );

    // An over-long record is cut, still one record ending in a newline.
    kmsg::log_summary(Level::Info, format_args!("{}", "x".repeat(5000)));
    let last = packets(&reader);
    assert_eq!(last.len(), 1);
    assert!(
        last[0].len() < 1024 && last[0].ends_with("xx\n"),
        "{}",
        last[0].len()
    );
}
