/** dendra's public API: the compiler, the artifact, the runtime. */
export { compile, importModel, resolveProfile, type CompileOptions } from './compiler/index.js';
export { writeArtifact } from './artifact/write.js';
export { readArtifact, readArtifactFile } from './artifact/read.js';
export { InferenceSession, Tensor, type SessionOptions } from './runtime/index.js';
export { loadProfile, builtinProfiles, type DeviceProfile } from './common/profile.js';
export { DendraError, ModelError, ArtifactError, ProfileError, InputError, DeviceError } from './common/errors.js';
export { connectBoard } from './runtime/backends/device/client.js';
export type { Board } from './runtime/backends/device/board.js';
export { deploy, artifactId, type DeployReport } from './runtime/backends/device/deploy.js';
export { scan } from './runtime/backends/device/scan.js';
export { BoardEmulator } from './runtime/backends/device/emulator.js';
export { generateDefects, loadDefectMap, type DefectMap } from './common/defects.js';
export { trainInSitu, trainInSituSteps, type InSituOptions, type InSituResult, type InSituReport, type TrainEvent } from './runtime/train/insitu.js';
export { BoardTrainChip } from './runtime/train/board-chip.js';
export { createPulseChip } from './runtime/pulse-chip.js';
export { native, NativeActivation, NativeDendriteKind } from './native/index.js';
export type { NativeTrainer, NativeTrainNetwork, NativeTrainLayer, NativeTrainHardware, NativeTrainDendrites, NativeOptimizer, NativeTrainGradients, NativeFitOptions, NativeFitProgress } from './native/index.js';
export { toTrainNetwork, type TrainNetworkOptions } from './compiler/passes/train-network.js';
