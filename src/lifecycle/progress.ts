/** One progress report of a long lifecycle operation. `total` is unknown (undefined) for some phases. */
export interface Progress {
  readonly operation: 'move' | 'export' | 'import' | 'delete' | 'create';
  readonly phase: string;
  readonly table?: string;
  readonly done: number;
  readonly total?: number;
}

/** Callback receiving `Progress` events of a long operation. */
export type ProgressListener = (p: Progress) => void;

export interface ProgressPrinterOptions {
  /** One JSON object per line instead of a bar. */
  readonly json: boolean;
  readonly stream?: NodeJS.WriteStream;
}

/**
 * A tiny stderr progress printer: a redrawn bar on a terminal, NDJSON lines (`{"event":"progress",...}`) with
 * `--json` so scripts (and the crash tests) can follow an operation, and silence otherwise (logs stay clean).
 */
export function createProgressPrinter(options: ProgressPrinterOptions): { onProgress: ProgressListener; done(): void } {
  const stream = options.stream ?? process.stderr;
  const tty = stream.isTTY === true;
  let lastDraw = 0;
  let drawn = false;
  return {
    onProgress(p) {
      if (options.json) {
        stream.write(`${JSON.stringify({ event: 'progress', ...p })}\n`);
        return;
      }
      if (!tty) return;
      const now = Date.now();
      // Redrawing on every batch would cost more than the batch on a fast local server.
      if (now - lastDraw < 80 && p.total !== undefined && p.done < p.total) return;
      lastDraw = now;
      const width = 30;
      const label = `${p.operation} ${p.phase}${p.table ? ` ${p.table}` : ''}`;
      let line: string;
      if (p.total !== undefined && p.total > 0) {
        const ratio = Math.min(1, p.done / p.total);
        const filled = Math.round(ratio * width);
        line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(ratio * 100)).padStart(3)}% ${label} ${p.done}/${p.total}`;
      } else {
        line = `[${'.'.repeat(width)}] ${label} ${p.done}`;
      }
      stream.write(`\r${line.slice(0, (stream.columns ?? 100) - 1).padEnd(Math.min(99, (stream.columns ?? 100) - 1))}`);
      drawn = true;
    },
    done() {
      if (drawn && tty && !options.json) stream.write('\n');
      drawn = false;
    },
  };
}
