/**
 * MemoryDevice against the device conformance suite.
 *
 * @module
 */

import { MemoryDevice } from "../../mod/device/memory_device.ts";
import { runDeviceConformance } from "./device_conformance.ts";

runDeviceConformance("MemoryDevice", (sizeBytes) => {
  return Promise.resolve({
    device: new MemoryDevice("mem0", sizeBytes),
    cleanup: () => Promise.resolve(),
  });
});
