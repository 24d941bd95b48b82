//! libtorch settles on its CUDA hooks the first time anything asks for them and keeps that
//! answer. When something asks before `libtorch_cuda.so` is loaded (here: a CUDA query first,
//! as a host application or an earlier library call may do), the doctor must still report, not
//! panic inside tch asking for CUDA's versions; and a job run through `run::run` must load the
//! library before anything else. Its own test binary: the order within one process is the point.

use modeconn_trainer::job::{DoctorJob, Job, Report};

#[test]
fn the_doctor_reports_when_cuda_was_asked_for_before_its_library_loaded() {
    // Asks libtorch for its CUDA hooks before the trainer loads libtorch_cuda.so.
    let early = tch::Cuda::is_available();
    let report = modeconn_trainer::doctor::doctor();
    if report.cuda_library_loads && !early {
        // Loaded too late for libtorch: no CUDA in this process, and the report says so.
        assert!(!report.cuda_available);
        assert_eq!(report.libtorch.cuda_runtime, 0);
        let why = report.no_devices.as_deref().unwrap_or_default();
        assert!(
            why.contains("loaded after") || why.contains("driver"),
            "{why}"
        );
    }
    // Through the plugin's entry point the same job reports the same, again without a panic.
    let job = Job::Doctor(DoctorJob::default());
    let again = modeconn_trainer::run::run(&job, &mut |_| {}).expect("the doctor job runs");
    assert!(matches!(again, Report::Doctor(_)));
}
