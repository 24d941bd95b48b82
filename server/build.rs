//! Generates the gRPC service of the Open Inference Protocol from `proto/grpc_predict_v2.proto`
//! with protox (a protobuf compiler written in Rust), so that building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    // The client (without a transport of its own) serves the benchmarks and tests that call
    // the service from Rust.
    tonic_prost_build::configure()
        .build_client(true)
        .build_transport(false)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
