/** A LevelDB store whose writes fail while `failing()` says so (a full disk), for the hub's failure tests. */
import { Store, type StoreOptions, type TaskStore } from '../../hub/src/store/store.js';

export function failingStore(failing: () => boolean): (location: string, options: StoreOptions) => Promise<TaskStore> {
  return async (location, options) => {
    const real = await Store.open(location, options);
    return {
      id: real.id,
      loadAll: () => real.loadAll(),
      write: (records) => (failing() ? Promise.reject(new Error('No space left on device')) : real.write(records)),
      close: () => real.close(),
    };
  };
}
