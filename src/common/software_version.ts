/**
 * The software version, the one place the programs read it from: `--version` of the storage
 * node, the router and the client, and the version the router's Stats reports. It must equal
 * package.json's `version` (software_version_test.ts checks): src/ cannot import package.json
 * itself (the layer checker allows no import outside src/, and the CLI runs without a read
 * permission on it).
 *
 * @module
 */

/** package.json's `version`. */
export const SOFTWARE_VERSION = "0.1.0";

/** The `--version` line of `program`: `vectordb server 0.1.0`. */
export function versionLine(program: string): string {
  return `vectordb ${program} ${SOFTWARE_VERSION}`;
}
