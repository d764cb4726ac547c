use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("proto");

    // Watching the whole directory also covers files that are only imported.
    println!("cargo:rerun-if-changed={}", proto_dir.display());

    // The vendored protoc and its well-known types keep the build independent
    // of whatever protoc (if any) is installed, and so reproducible.
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc);
    // Maps as BTreeMaps: their encoding must not depend on hash order, or replicas that
    // build the same config block would hash it differently.
    config.btree_map(["."]);

    let protos = [
        proto_dir.join("common/common.proto"),
        proto_dir.join("common/configtx.proto"),
        proto_dir.join("common/policies.proto"),
        proto_dir.join("msp/msp_principal.proto"),
        proto_dir.join("msp/identities.proto"),
        proto_dir.join("orderer/ab.proto"),
        proto_dir.join("orderer/configuration.proto"),
        proto_dir.join("synod/channel.proto"),
        proto_dir.join("synod/notary.proto"),
        proto_dir.join("synod/replica.proto"),
    ];
    tonic_prost_build::configure()
        // Redundant with the directory watch above.
        .emit_rerun_if_changed(false)
        .compile_with_config(config, &protos, &[proto_dir, well_known])?;
    Ok(())
}
