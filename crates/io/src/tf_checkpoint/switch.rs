//! Switching a TensorFlow checkpoint's two files into place as one. A prefix's `.index` and its data
//! shard must come from the same save (the index holds the shard's offsets and checksums), but two
//! files cannot be renamed at once. So a save writes both under temporary names, then a switch
//! record `<prefix>.ferroflow-switch` naming its process, then renames the data file and the index,
//! then removes the record. A reader that finds a record reads each file from its temporary while
//! that still exists, and the next save or restore in the directory finishes the renames of a
//! writer that no longer runs. At every instant the prefix therefore reads as the old pair (before
//! the record exists) or as the new one (from the moment it does).
//!
//! TensorFlow's own reader knows nothing of the record: a kill between the two renames leaves a
//! pair that TensorFlow refuses (a checksum error) until ferroflow next saves or restores there.

use crate::files::{io_err, read_bounded, sync_dir, temp_path_for, write_atomic};
use crate::{IoError, Result};
use std::path::{Path, PathBuf};

/// What a switch record's file name ends with.
const RECORD_SUFFIX: &str = ".ferroflow-switch";
/// What a switch record holds before its writer's process id.
const RECORD_TAG: &str = "ferroflow-switch ";

/// The steps of a save, in order. A test hook may stop a save before any of them, leaving the
/// files as a kill at that moment would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SaveStep {
    WriteData,
    WriteIndex,
    WriteRecord,
    RenameData,
    RenameIndex,
    RemoveRecord,
}

impl SaveStep {
    pub(crate) const ALL: [SaveStep; 6] = [
        SaveStep::WriteData,
        SaveStep::WriteIndex,
        SaveStep::WriteRecord,
        SaveStep::RenameData,
        SaveStep::RenameIndex,
        SaveStep::RemoveRecord,
    ];
}

/// `<prefix>.index`.
pub(crate) fn index_path(prefix: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}.index"))
}

/// `<prefix>.data-SSSSS-of-NNNNN`.
pub(crate) fn shard_path(prefix: &str, shard: i32, num_shards: i32) -> PathBuf {
    PathBuf::from(format!("{prefix}.data-{shard:05}-of-{num_shards:05}"))
}

fn record_path(prefix: &str) -> PathBuf {
    PathBuf::from(format!("{prefix}{RECORD_SUFFIX}"))
}

/// The process named by the switch record of `prefix`, if there is one.
fn read_record(prefix: &str) -> Result<Option<u32>> {
    let path = record_path(prefix);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let text = read_bounded(&path, 64, "checkpoint switch record")?;
    std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.strip_prefix(RECORD_TAG))
        .and_then(|t| t.trim_end().parse::<u32>().ok())
        .map(Some)
        .ok_or(IoError::Corrupt {
            path,
            message: "a switch record must hold `ferroflow-switch <process id>`".into(),
        })
}

/// Where a reader finds the files of `prefix`: the index, and the data file of a one-shard
/// checkpoint when it has not been renamed into place yet.
pub(crate) struct PairPaths {
    pub(crate) index: PathBuf,
    pub(crate) pending_data: Option<PathBuf>,
}

/// The files `prefix` reads from now: the temporaries of an unfinished switch while they exist,
/// otherwise the files under their own names.
pub(crate) fn resolve(prefix: &str) -> Result<PairPaths> {
    let index = index_path(prefix);
    let Some(pid) = read_record(prefix)? else {
        return Ok(PairPaths {
            index,
            pending_data: None,
        });
    };
    let index_tmp = temp_path_for(&index, pid);
    let data_tmp = temp_path_for(&shard_path(prefix, 0, 1), pid);
    Ok(PairPaths {
        index: if index_tmp.is_file() {
            index_tmp
        } else {
            index
        },
        pending_data: data_tmp.is_file().then_some(data_tmp),
    })
}

/// Writes the pair of `prefix` (data file first, then index) and switches it into place, asking
/// `go_on` before each step; a `false` stops the save right there, as a kill would.
pub(crate) fn save_pair(
    prefix: &str,
    data: &[u8],
    index: &[u8],
    go_on: &mut dyn FnMut(SaveStep) -> bool,
) -> Result<()> {
    let me = std::process::id();
    let (data_path, index_path) = (shard_path(prefix, 0, 1), index_path(prefix));
    let (data_tmp, index_tmp) = (
        temp_path_for(&data_path, me),
        temp_path_for(&index_path, me),
    );
    let record = record_path(prefix);
    for step in SaveStep::ALL {
        if !go_on(step) {
            return Ok(());
        }
        let done = match step {
            SaveStep::WriteData => write_synced(&data_tmp, data),
            SaveStep::WriteIndex => write_synced(&index_tmp, index),
            SaveStep::WriteRecord => {
                write_atomic(&record, format!("{RECORD_TAG}{me}\n").as_bytes())
            }
            SaveStep::RenameData => rename(&data_tmp, &data_path),
            SaveStep::RenameIndex => rename(&index_tmp, &index_path),
            SaveStep::RemoveRecord => std::fs::remove_file(&record).map_err(io_err(&record)),
        };
        if let Err(e) = done {
            // Before the record, nothing names the temporaries: remove them. After it, they are
            // the new checkpoint, which readers already see and the next save or restore finishes.
            if matches!(
                step,
                SaveStep::WriteData | SaveStep::WriteIndex | SaveStep::WriteRecord
            ) {
                let _ = std::fs::remove_file(&data_tmp);
                let _ = std::fs::remove_file(&index_tmp);
            }
            return Err(e);
        }
    }
    sync_dir(&record);
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io_err(path))?;
    f.write_all(bytes).map_err(io_err(path))?;
    f.sync_all().map_err(io_err(path))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(io_err(to))?;
    sync_dir(to);
    Ok(())
}

/// Finishes the switches recorded in `dir` whose writer is `gone`: renames whichever of the two
/// temporaries still exist into place, then removes the record. Returns the processes whose
/// switch is still pending (a writer still running, or a rename that failed), so that their
/// temporaries are kept.
pub(crate) fn finish_switches(dir: &Path, gone: &dyn Fn(u32) -> bool) -> Vec<u32> {
    let mut pending = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pending;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(RECORD_SUFFIX)) else {
            continue;
        };
        let prefix = dir.join(stem).to_string_lossy().into_owned();
        let Ok(Some(pid)) = read_record(&prefix) else {
            continue;
        };
        if !gone(pid) || finish(&prefix, pid).is_err() {
            pending.push(pid);
        }
    }
    pending
}

fn finish(prefix: &str, pid: u32) -> Result<()> {
    for path in [shard_path(prefix, 0, 1), index_path(prefix)] {
        let tmp = temp_path_for(&path, pid);
        if tmp.is_file() {
            rename(&tmp, &path)?;
        }
    }
    let record = record_path(prefix);
    std::fs::remove_file(&record).map_err(io_err(&record))?;
    sync_dir(&record);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tf_checkpoint::write::write_tf_checkpoint_with;
    use crate::tf_checkpoint::TfCheckpointReader;
    use ferroflow_core::Value;

    fn tensors(x: f32) -> Vec<(String, Value)> {
        vec![
            ("a".into(), Value::from_f32(&[3], vec![x; 3]).unwrap()),
            ("b/c".into(), Value::from_f32(&[2, 2], vec![x; 4]).unwrap()),
        ]
    }

    /// The value every tensor of `prefix` holds, or `None` when the prefix is no checkpoint;
    /// panics when the tensors disagree (a pair from two saves) or a read fails.
    fn holds(prefix: &str) -> Option<f32> {
        if !TfCheckpointReader::exists(prefix) {
            return None;
        }
        let r = TfCheckpointReader::open(prefix).unwrap();
        let mut seen: Vec<f32> = Vec::new();
        for key in ["a", "b/c"] {
            let v = r.read(key).unwrap_or_else(|e| panic!("{key}: {e}"));
            seen.extend(v.unwrap().to_f64_vec().iter().map(|&x| x as f32));
        }
        assert!(seen.iter().all(|&x| x == seen[0]), "mixed pair: {seen:?}");
        Some(seen[0])
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".ferroflow-"))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn a_save_stopped_before_any_step_reads_as_the_old_checkpoint_or_the_new_one() {
        let dir = std::env::temp_dir().join(format!("ff-switch-{}", std::process::id()));
        // Stopping before step k leaves the files as a kill there would. Until the record is
        // written (k <= 2) the prefix reads as before; from then on as the new save, both while
        // the switch is pending and after a later save or restore has finished it.
        for first_save in [false, true] {
            for k in 0..=SaveStep::ALL.len() {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir).unwrap();
                let prefix = dir.join("model.ckpt").to_string_lossy().into_owned();
                let old = if first_save {
                    None
                } else {
                    write_tf_checkpoint_with(&prefix, &tensors(1.0), &mut |_| true).unwrap();
                    Some(1.0)
                };
                let mut steps = 0;
                write_tf_checkpoint_with(&prefix, &tensors(2.0), &mut |_| {
                    steps += 1;
                    steps <= k
                })
                .unwrap();
                let expected = if k <= 2 { old } else { Some(2.0) };
                assert_eq!(holds(&prefix), expected, "stopped before step {k}");
                // The writer is gone: the switch is finished (or there was none to finish).
                assert!(finish_switches(&dir, &|_| true).is_empty());
                assert_eq!(
                    holds(&prefix),
                    expected,
                    "stopped before step {k}, finished"
                );
                let left = leftovers(&dir);
                if k <= 2 {
                    // Unrecorded temporaries stay for the stale-temporary cleanup.
                    assert_eq!(left.len(), k, "stopped before step {k}: {left:?}");
                } else {
                    assert!(left.is_empty(), "stopped before step {k}: {left:?}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_running_writers_switch_is_left_to_it_and_a_bad_record_is_corrupt() {
        let dir = std::env::temp_dir().join(format!("ff-switch-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let prefix = dir.join("m").to_string_lossy().into_owned();
        write_tf_checkpoint_with(&prefix, &tensors(1.0), &mut |_| true).unwrap();
        let mut steps = 0;
        write_tf_checkpoint_with(&prefix, &tensors(3.0), &mut |_| {
            steps += 1;
            steps <= 4 // stop after the data file's rename
        })
        .unwrap();
        assert_eq!(holds(&prefix), Some(3.0));
        let me = std::process::id();
        assert_eq!(finish_switches(&dir, &|_| false), vec![me]);
        assert_eq!(holds(&prefix), Some(3.0));
        assert_eq!(leftovers(&dir).len(), 2, "{:?}", leftovers(&dir));

        std::fs::write(record_path(&prefix), "rm -rf /\n").unwrap();
        let e = TfCheckpointReader::open(&prefix).err().unwrap().to_string();
        assert!(
            e.contains("m.ferroflow-switch") && e.contains("process id"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
