/**
 * Writing an export directory's files: the shared weights file and each graph, every graph passing the structural
 * check before anything else is written; the files are listed with their sizes for the summary.
 */
import { copyFileSync, existsSync, promises as fsp, statSync } from 'node:fs';
import path from 'node:path';
import { VlakitError } from '../errors.js';
import { type CheckReport, checkModel } from './check.js';
import { type ModelProto, type WeightStore, decodeModel, encodeModel } from './onnx.js';

export class ExportFiles {
  readonly files: { name: string; bytes: number }[] = [];
  readonly checks: CheckReport[] = [];

  /** `dir`: the (temporary) export directory being filled. */
  constructor(readonly dir: string) {}

  async write(name: string, data: Uint8Array | string): Promise<void> {
    await fsp.writeFile(path.join(this.dir, name), data);
    this.files.push({ name, bytes: typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength });
  }

  /** Copies `file` in when it exists (tokenizer and processor files of a checkpoint). */
  copy(file: string): void {
    if (!existsSync(file)) return;
    const name = path.basename(file);
    copyFileSync(file, path.join(this.dir, name));
    this.files.push({ name, bytes: statSync(file).size });
  }

  /** The weights file, then each graph, checked structurally against the weights on disk. */
  async graphs(store: WeightStore, dataFile: string, graphs: Record<string, ModelProto>): Promise<void> {
    await store.writeTo(path.join(this.dir, dataFile));
    this.files.push({ name: dataFile, bytes: store.byteLength });
    for (const [name, g] of Object.entries(graphs)) {
      const bytes = encodeModel(g);
      await this.write(name, bytes);
      const report = checkModel(decodeModel(bytes), this.dir);
      if (report.problems.length) throw new VlakitError('E_ONNX', `the exported ${name} fails the structural check: ${report.problems.slice(0, 5).join('; ')}`, { file: name });
      this.checks.push(report);
    }
  }
}
