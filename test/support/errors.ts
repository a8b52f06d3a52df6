/** The code of the DagworkError that `fn` throws ('no error' when it throws none); anything else is rethrown. */
import { DagworkError } from '../../proto/src/errors.js';

export function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof DagworkError) return err.code;
    throw err;
  }
  return 'no error';
}
